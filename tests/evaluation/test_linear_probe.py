"""Tests for the frozen-encoder linear probe."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from lwfedssl_jax import evaluation
from lwfedssl_jax.evaluation.linear_probe import linear_probe_accuracy


def _blobs(num_train, num_test, dim=5, num_classes=3, spread=0.3, seed=0):
    """Gaussian blobs around well-separated class centres."""
    rng = np.random.default_rng(seed)
    centers = 4.0 * np.eye(num_classes, dim)
    y_train = rng.integers(0, num_classes, num_train)
    y_test = rng.integers(0, num_classes, num_test)
    x_train = centers[y_train] + spread * rng.normal(size=(num_train, dim))
    x_test = centers[y_test] + spread * rng.normal(size=(num_test, dim))
    return x_train, y_train, x_test, y_test


@pytest.fixture(scope='module')
def digits():
    x, y = load_digits(return_X_y=True)
    return train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)


@pytest.mark.parametrize('num_train', [60, 600])  # Full-batch and minibatch.
def test_separable_data_is_solved(num_train):
    x_train, y_train, x_test, y_test = _blobs(num_train, 200)
    # Second path: the blobs are separable by the nearest class centre.
    centers = 4.0 * np.eye(3, 5)
    nearest = np.argmin(((x_test[:, None] - centers) ** 2).sum(-1), axis=1)
    assert np.all(nearest == y_test)
    # Default epochs: full-batch mode takes only one step per epoch.
    assert linear_probe_accuracy(x_train, y_train, x_test, y_test,
                                 num_classes=3) == 1.0


def test_digits_matches_sklearn_logistic_regression(digits):
    x_train, x_test, y_train, y_test = digits
    scaler = StandardScaler().fit(x_train)
    reference = LogisticRegression(max_iter=2000).fit(
        scaler.transform(x_train), y_train).score(scaler.transform(x_test),
                                                  y_test)
    acc = linear_probe_accuracy(x_train, y_train, x_test, y_test,
                                num_classes=10)
    assert acc > 0.9
    assert abs(acc - reference) <= 0.03, (acc, reference)


def test_deterministic_for_a_seed(digits):
    x_train, x_test, y_train, y_test = digits
    kwargs = dict(num_classes=10, epochs=5, batch_size=64)
    first = linear_probe_accuracy(x_train, y_train, x_test, y_test, seed=3,
                                  **kwargs)
    second = linear_probe_accuracy(x_train, y_train, x_test, y_test, seed=3,
                                   **kwargs)
    assert first == second


def test_random_labels_give_chance():
    rng = np.random.default_rng(0)
    x_train = rng.normal(size=(1000, 20))
    x_test = rng.normal(size=(2000, 20))
    y_train = rng.integers(0, 4, 1000)
    y_test = rng.integers(0, 4, 2000)
    acc = linear_probe_accuracy(x_train, y_train, x_test, y_test,
                                num_classes=4, epochs=20)
    # Chance is 0.25; the binomial std over 2000 test points is ~0.01.
    assert abs(acc - 0.25) < 0.05


def test_constant_train_feature_is_ignored():
    # Overlapping blobs (accuracy well below 1) plus a feature that is
    # constant on train but huge and random on test: it must not matter.
    x_train, y_train, x_test, y_test = _blobs(400, 400, spread=2.0, seed=1)
    rng = np.random.default_rng(1)
    const_train = np.hstack([x_train, np.full((400, 1), 0.1)])
    wild_test = np.hstack([x_test, 1e3 * rng.normal(size=(400, 1))])
    kwargs = dict(num_classes=3, epochs=20)
    base = linear_probe_accuracy(x_train, y_train, x_test, y_test, **kwargs)
    extra = linear_probe_accuracy(const_train, y_train, wild_test, y_test,
                                  **kwargs)
    assert 0.5 < base < 1.0
    assert abs(extra - base) <= 0.01


def test_feature_scale_invariance():
    # Standardisation makes the probe blind to per-feature affine rescaling.
    x_train, y_train, x_test, y_test = _blobs(300, 300, spread=2.0, seed=2)
    scale = np.array([1e-3, 1.0, 50.0, 3.0, 1e2])
    shift = np.array([5.0, -2.0, 0.0, 1e2, 7.0])
    kwargs = dict(num_classes=3, epochs=20)
    base = linear_probe_accuracy(x_train, y_train, x_test, y_test, **kwargs)
    scaled = linear_probe_accuracy(x_train * scale + shift, y_train,
                                   x_test * scale + shift, y_test, **kwargs)
    assert abs(scaled - base) <= 0.01


def test_registry():
    assert evaluation.get('linear_probe') is linear_probe_accuracy
    assert set(evaluation.EVALUATORS) == {'knn', 'linear_probe'}


@pytest.mark.parametrize('kwargs, match', [
    (dict(epochs=0), 'epochs must be a positive int'),
    (dict(batch_size=0), 'batch_size must be a positive int'),
    (dict(learning_rate=0.0), 'learning_rate'),
    (dict(weight_decay=-1.0), 'weight_decay'),
    (dict(seed=1.5), 'seed'),
    (dict(num_classes=2), r'train_labels must lie in \[0, num_classes\)'),
])
def test_errors(kwargs, match):
    x_train, y_train, x_test, y_test = _blobs(20, 10)
    kwargs = dict(dict(num_classes=3), **kwargs)
    with pytest.raises(ValueError, match=match):
        linear_probe_accuracy(x_train, y_train, x_test, y_test, **kwargs)


def test_errors_on_mismatched_splits():
    x_train, y_train, x_test, y_test = _blobs(20, 10)
    with pytest.raises(ValueError, match=r'test_labels must be \[N\] = \[10\]'):
        linear_probe_accuracy(x_train, y_train, x_test, y_test[:5],
                              num_classes=3)
    with pytest.raises(ValueError, match='D=5 but test_features have D=4'):
        linear_probe_accuracy(x_train, y_train, x_test[:, :4], y_test,
                              num_classes=3)
