"""Tests for lwfedssl_jax.data.partition."""

import numpy as np
import pytest

from lwfedssl_jax.data.partition import partition_indices

# 10 classes x 200 examples, interleaved so index order carries no class.
LABELS = np.tile(np.arange(10), 200)


def _assert_partition(parts, n):
    for p in parts:
        assert p.dtype == np.int64
        assert np.all(np.diff(p) > 0), 'indices must be sorted and unique'
    allidx = np.concatenate(parts)
    assert len(allidx) == n, 'parts must be disjoint'
    np.testing.assert_array_equal(np.sort(allidx), np.arange(n))


def _max_class_fraction(parts, labels):
    """Mean over clients of the share of the client's most common class."""
    fracs = [np.bincount(labels[p], minlength=10).max() / len(p)
             for p in parts]
    return float(np.mean(fracs))


@pytest.mark.parametrize('kind', ['uniform', 'dirichlet'])
@pytest.mark.parametrize('num_clients', [1, 3, 7])
def test_is_a_partition(kind, num_clients):
    parts = partition_indices(LABELS, num_clients, kind=kind, alpha=1.0,
                              seed=3)
    assert len(parts) == num_clients
    _assert_partition(parts, len(LABELS))


def test_uniform_sizes_differ_by_at_most_one():
    parts = partition_indices(np.zeros(103, np.int32), 10)
    sizes = sorted(len(p) for p in parts)
    # 103 = 3 * 11 + 7 * 10.
    assert sizes == [10] * 7 + [11] * 3


def test_single_example_per_client():
    parts = partition_indices(np.arange(5), 5, kind='uniform', seed=1)
    assert sorted(int(p[0]) for p in parts) == [0, 1, 2, 3, 4]
    assert all(len(p) == 1 for p in parts)


@pytest.mark.parametrize('kind', ['uniform', 'dirichlet'])
def test_deterministic_and_seed_sensitive(kind):
    a = partition_indices(LABELS, 5, kind=kind, seed=11)
    b = partition_indices(LABELS, 5, kind=kind, seed=11)
    c = partition_indices(LABELS, 5, kind=kind, seed=12)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(len(x) != len(z) or np.any(x != z) for x, z in zip(a, c))


def test_uniform_is_shuffled():
    # A contiguous split of the interleaved labels would give each client
    # exactly 20 of every class; a random split almost surely does not.
    parts = partition_indices(LABELS, 10, seed=0)
    assert not all(np.all(np.bincount(LABELS[p]) == 20) for p in parts)
    assert not np.array_equal(parts[0], np.arange(200))


def test_dirichlet_large_alpha_is_near_uniform():
    parts = partition_indices(LABELS, 10, kind='dirichlet', alpha=1000.0,
                              seed=0)
    # Every class share is close to 1/10 of the client (200 examples each).
    for p in parts:
        hist = np.bincount(LABELS[p], minlength=10) / len(p)
        np.testing.assert_allclose(hist, 0.1, atol=0.05)
    sizes = np.array([len(p) for p in parts])
    np.testing.assert_allclose(sizes, 200, rtol=0.2)
    assert _max_class_fraction(parts, LABELS) < 0.2


def test_dirichlet_small_alpha_is_skewed():
    parts = partition_indices(LABELS, 10, kind='dirichlet', alpha=0.05,
                              seed=0)
    _assert_partition(parts, len(LABELS))
    # With alpha = 0.05 most clients are dominated by one or two classes; a
    # uniform split would give a mean max-class fraction near 0.1.
    assert _max_class_fraction(parts, LABELS) > 0.5
    uniform = partition_indices(LABELS, 10, seed=0)
    assert _max_class_fraction(uniform, LABELS) < 0.2


def test_dirichlet_min_size_respected():
    parts = partition_indices(LABELS, 20, kind='dirichlet', alpha=0.5,
                              seed=0, min_size=30)
    assert min(len(p) for p in parts) >= 30
    _assert_partition(parts, len(LABELS))


def test_dirichlet_impossible_min_size_raises():
    # 3 classes x 100 over 2 clients with min_size 150 needs an exact 150/150
    # split, i.e. one class cut in half; Dirichlet(0.01) shares are almost
    # one-hot, so whole classes go to one client (100/200 or 0/300).
    labels = np.repeat(np.arange(3), 100)
    with pytest.raises(ValueError, match='Increase alpha'):
        partition_indices(labels, 2, kind='dirichlet', alpha=0.01,
                          min_size=150)


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_clients=0), r'fl.num_clients=0: must be >= 1'),
    (dict(num_clients=2001), 'exceeds the number of examples'),
    (dict(num_clients=2, kind='dirichlet', alpha=0.0), r'data.dirichlet_alpha=0.0: must be > 0'),
    (dict(num_clients=2, alpha=-1.0), r'data.dirichlet_alpha=-1.0: must be > 0'),
    (dict(num_clients=2, kind='pathological'), "'dirichlet', 'uniform'"),
    (dict(num_clients=10, min_size=201), 'min_size=201 is impossible'),
])
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        partition_indices(LABELS, **kwargs)


def test_errors_on_bad_labels():
    with pytest.raises(ValueError, match='1-D'):
        partition_indices(np.zeros((4, 2), np.int32), 2)
    with pytest.raises(ValueError, match='integer labels'):
        partition_indices(np.zeros(4, np.float32), 2, kind='dirichlet')
