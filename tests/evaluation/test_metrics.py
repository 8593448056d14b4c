"""Classification metrics against scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import (accuracy_score, balanced_accuracy_score,
                             precision_recall_fscore_support)

from lwfedssl_jax.evaluation.metrics import METRICS, classification_metrics, prefixed

# sklearn warns about the very cases checked here (extra or single classes).
pytestmark = pytest.mark.filterwarnings('ignore::UserWarning:sklearn')


def _sklearn(preds, labels):
    p, r, f, _ = precision_recall_fscore_support(labels, preds, average='macro',
                                                 zero_division=0)
    return {'top1': 100 * accuracy_score(labels, preds),
            'mean_per_class': 100 * balanced_accuracy_score(labels, preds),
            'macro_precision': 100 * p, 'macro_recall': 100 * r, 'macro_f1': 100 * f}


CASES = {
    # Imbalanced classes, some never predicted (precision 0/0 -> 0).
    'imbalanced': (np.r_[np.zeros(50), np.ones(10), np.full(5, 2)].astype(int),
                   np.r_[np.zeros(45), np.ones(15), np.full(5, 0)].astype(int)),
    # A predicted class absent from the labels: macro recall < mean per class.
    'extra_predicted_class': (np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 3])),
    'perfect': (np.arange(20) % 4, np.arange(20) % 4),
    'one_class': (np.zeros(7, int), np.zeros(7, int)),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_matches_sklearn(case):
    labels, preds = CASES[case]
    got = classification_metrics(preds, labels)
    assert set(got) == set(METRICS)
    expected = _sklearn(preds, labels)
    for name in METRICS:
        assert got[name] == pytest.approx(expected[name], abs=1e-9), name


def test_random_predictions_match_sklearn():
    rng = np.random.default_rng(0)
    for trial in range(20):
        classes = int(rng.integers(2, 30))
        labels = rng.integers(0, classes, 300)
        preds = np.where(rng.random(300) < 0.5, labels, rng.integers(0, classes + 3, 300))
        got, expected = classification_metrics(preds, labels), _sklearn(preds, labels)
        for name in METRICS:
            assert got[name] == pytest.approx(expected[name], abs=1e-9), (trial, name)


def test_recall_and_mean_per_class_differ_only_with_extra_classes():
    labels, preds = CASES['extra_predicted_class']
    got = classification_metrics(preds, labels)
    # Classes 0, 1, 2 have recalls 1/2, 1, 1/2; class 3 exists only in the
    # predictions and adds a 0 to the macro recall.
    assert got['mean_per_class'] == pytest.approx(100 * (0.5 + 1 + 0.5) / 3)
    assert got['macro_recall'] == pytest.approx(100 * (0.5 + 1 + 0.5) / 4)


def test_prefixed_and_errors():
    out = prefixed('knn', [0, 1], [0, 0])
    assert out['knn_top1'] == 50.0 and len(out) == len(METRICS)
    with pytest.raises(ValueError, match='same shape'):
        classification_metrics([0, 1], [0])
    with pytest.raises(ValueError, match='empty'):
        classification_metrics([], [])
