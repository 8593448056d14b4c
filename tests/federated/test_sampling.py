import jax
import numpy as np
import pytest

from lwfedssl_jax.federated.sampling import sample_clients


def test_full_participation_is_every_client_in_order():
    np.testing.assert_array_equal(sample_clients(jax.random.key(0), 5, 5), np.arange(5))


def test_partial_participation_sorted_unique_deterministic_and_key_dependent():
    draws = [np.asarray(sample_clients(jax.random.key(s), 100, 25)) for s in range(20)]
    for d in draws:
        assert len(d) == 25 and len(set(d.tolist())) == 25
        assert np.all(np.diff(d) > 0) and d.min() >= 0 and d.max() < 100
    np.testing.assert_array_equal(draws[0], sample_clients(jax.random.key(0), 100, 25))
    assert len({tuple(d) for d in draws}) == 20
    # Uniform: each client is picked with probability 1/4 (20 x 25 = 500 picks).
    counts = np.bincount(np.concatenate(draws), minlength=100)
    assert counts.sum() == 500 and counts.max() < 15


@pytest.mark.parametrize('k', [0, 6])
def test_bad_counts_rejected(k):
    with pytest.raises(ValueError, match='clients_per_round'):
        sample_clients(jax.random.key(0), 5, k)
