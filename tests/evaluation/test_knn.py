"""Tests for the weighted cosine kNN monitor."""

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from lwfedssl_jax import evaluation
from lwfedssl_jax.evaluation.knn import knn_accuracy, knn_predict

NUM_CLASSES = 5


def _clustered(num_train=300, num_test=120, dim=16, seed=0):
    """Noisy class clusters: accuracy well inside (0, 1), so it is informative."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(NUM_CLASSES, dim))
    y_train = rng.integers(0, NUM_CLASSES, num_train)
    y_test = rng.integers(0, NUM_CLASSES, num_test)
    x_train = centers[y_train] + 1.5 * rng.normal(size=(num_train, dim))
    x_test = centers[y_test] + 1.5 * rng.normal(size=(num_test, dim))
    return (x_train.astype(np.float32), y_train, x_test.astype(np.float32),
            y_test)


def _numpy_knn(x_train, y_train, x_test, k, temperature, num_classes):
    """Independent float64 implementation with full sorting and raw exp."""
    a = x_train / np.linalg.norm(x_train, axis=1, keepdims=True)
    b = x_test / np.linalg.norm(x_test, axis=1, keepdims=True)
    sims = b.astype(np.float64) @ a.T.astype(np.float64)
    preds = []
    for row in sims:
        top = np.argsort(-row)[:k]
        votes = np.zeros(num_classes)
        np.add.at(votes, y_train[top], np.exp(row[top] / temperature))
        preds.append(np.argmax(votes))
    return np.array(preds)


def _polar(degrees, radius=1.0):
    rad = np.deg2rad(np.asarray(degrees, np.float64))
    return (np.stack([np.cos(rad), np.sin(rad)], axis=1)
            * np.asarray(radius)[..., None])


# Train bank on the unit circle (radii vary: only the direction may matter).
HAND_TRAIN = _polar([0, 30, 40, 90, 180], radius=[1.0, 3.0, 0.5, 2.0, 7.0])
HAND_LABELS = np.array([0, 1, 1, 0, 2])
HAND_TEST = _polar([10, 175], radius=[4.0, 0.2])


@pytest.mark.parametrize('k, temperature, expected', [
    # Point at 10 deg: cosines 0.985 (cls 0), 0.940 (cls 1), 0.866 (cls 1).
    # k=1: nearest is class 0.
    (1, 1.0, [0, 2]),
    # k=3, T=1: class 0 gets e^0.985 = 2.68, class 1 gets
    # e^0.940 + e^0.866 = 2.56 + 2.38 = 4.94 -> class 1.
    (3, 1.0, [1, 2]),
    # k=3, T=0.01: e^98.5 beats e^94.0 + e^86.6 -> class 0 again.
    (3, 0.01, [0, 2]),
    # k=5, T=1: class 0 adds e^cos80 = 1.19 -> 3.87, still < 4.94.
    # Point at 175 deg: class 2 at cos5 = 0.996 -> e^0.996 = 2.71 beats
    # class 0 (e^0.087 + e^-0.996 = 1.46) and class 1 (e^-0.707 + e^-0.819
    # = 0.93).
    (5, 1.0, [1, 2]),
])
def test_hand_worked_example(k, temperature, expected):
    preds = knn_predict(HAND_TRAIN, HAND_LABELS, HAND_TEST, num_classes=3,
                        k=k, temperature=temperature)
    np.testing.assert_array_equal(preds, expected)
    acc = knn_accuracy(HAND_TRAIN, HAND_LABELS, HAND_TEST, np.array([1, 2]),
                       num_classes=3, k=k, temperature=temperature)
    assert acc == np.mean(np.array(expected) == [1, 2])


@pytest.mark.parametrize('k, temperature', [(1, 0.07), (5, 0.07), (20, 0.07),
                                            (20, 0.5)])
def test_matches_numpy_reference(k, temperature):
    x_train, y_train, x_test, y_test = _clustered()
    expected = _numpy_knn(x_train, y_train, x_test, k, temperature, NUM_CLASSES)
    preds = knn_predict(x_train, y_train, x_test, num_classes=NUM_CLASSES, k=k,
                        temperature=temperature)
    np.testing.assert_array_equal(preds, expected)
    acc = knn_accuracy(x_train, y_train, x_test, y_test,
                       num_classes=NUM_CLASSES, k=k, temperature=temperature)
    assert acc == pytest.approx(np.mean(expected == y_test))
    assert 0.3 < acc < 1.0  # Informative regime, not trivially 0 or 1.


def test_k1_matches_sklearn_cosine_1nn():
    x_train, y_train, x_test, y_test = _clustered(seed=1)
    sk = KNeighborsClassifier(n_neighbors=1, metric='cosine',
                              algorithm='brute').fit(x_train, y_train)
    preds = knn_predict(x_train, y_train, x_test, num_classes=NUM_CLASSES, k=1)
    np.testing.assert_array_equal(preds, sk.predict(x_test))
    assert knn_accuracy(x_train, y_train, x_test, y_test,
                        num_classes=NUM_CLASSES, k=1) == pytest.approx(
                            sk.score(x_test, y_test))


def test_huge_temperature_is_majority_vote():
    x_train, y_train, x_test, _ = _clustered(seed=2)
    k = 7  # Odd k, 5 classes: ties remain possible, so compare on tie-free rows.
    sims = (x_test / np.linalg.norm(x_test, axis=1, keepdims=True)) @ (
        x_train / np.linalg.norm(x_train, axis=1, keepdims=True)).T
    top = np.argsort(-sims, axis=1)[:, :k]
    counts = np.stack([np.bincount(y_train[t], minlength=NUM_CLASSES)
                       for t in top])
    sorted_counts = np.sort(counts, axis=1)
    tie_free = sorted_counts[:, -1] > sorted_counts[:, -2]
    preds = knn_predict(x_train, y_train, x_test, num_classes=NUM_CLASSES, k=k,
                        temperature=1e6)
    np.testing.assert_array_equal(preds[tie_free],
                                  counts.argmax(axis=1)[tie_free])


def test_tiny_temperature_does_not_overflow():
    # exp(1 / 1e-4) overflows float32; the vote must still be 1-NN.
    x_train, y_train, x_test, _ = _clustered(seed=3)
    np.testing.assert_array_equal(
        knn_predict(x_train, y_train, x_test, num_classes=NUM_CLASSES, k=20,
                    temperature=1e-4),
        knn_predict(x_train, y_train, x_test, num_classes=NUM_CLASSES, k=1))


def test_chunking_invariance():
    x_train, y_train, x_test, _ = _clustered(num_test=50)
    results = [knn_predict(x_train, y_train, x_test, num_classes=NUM_CLASSES,
                           chunk_size=c) for c in (1, 7, 50, 1024)]
    for preds in results[1:]:
        np.testing.assert_array_equal(preds, results[0])


def test_registry():
    assert evaluation.get('knn') is knn_accuracy
    with pytest.raises(ValueError, match=r"choose one of \['knn', 'linear_probe'\]"):
        evaluation.get('svm')


@pytest.mark.parametrize('kwargs, match', [
    (dict(k=0), r'k must be an int in \[1, N_train\] = \[1, 5\]'),
    (dict(k=6), r'k must be an int in \[1, N_train\] = \[1, 5\]'),
    (dict(k=2.0), 'k must be an int'),
    (dict(temperature=0.0), 'temperature'),
    (dict(chunk_size=0), 'chunk_size'),
    (dict(num_classes=2), r'train_labels must lie in \[0, num_classes\)'),
])
def test_errors(kwargs, match):
    kwargs = dict(dict(num_classes=3, k=1), **kwargs)
    with pytest.raises(ValueError, match=match):
        knn_accuracy(HAND_TRAIN, HAND_LABELS, HAND_TEST, np.array([1, 2]),
                     **kwargs)


def test_errors_on_mismatched_splits():
    with pytest.raises(ValueError, match='D=2 but test_features have D=3'):
        knn_accuracy(HAND_TRAIN, HAND_LABELS, np.ones((2, 3)), np.array([1, 2]),
                     num_classes=3)
    with pytest.raises(ValueError, match=r'test_labels must lie in'):
        knn_accuracy(HAND_TRAIN, HAND_LABELS, HAND_TEST, np.array([1, 3]),
                     num_classes=3, k=1)
