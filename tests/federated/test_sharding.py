"""Clients split over a device mesh (8 fake CPU devices) give the same round."""

import jax
import numpy as np
import optax
import pytest

from lwfedssl_jax.sharding import CLIENTS, make_client_mesh

import test_client as tc   # noqa: E402  (tiny model helpers of the client tests)


def test_mesh_sharded_round_matches_single_device():
    mesh = make_client_mesh(-1)
    assert mesh.size == 8
    spec = tc.stage('layerwise', 1)
    data = tc.images(8 * 8).reshape(8, 8, 8, 8, 3)

    def run(mesh):
        round_fn, state, frozen = tc.make_round(
            spec, 'vmap', tx=optax.sgd(0.05), batch_size=8, epochs=1, n_max=8,
            num_clients=8, mesh=mesh)
        state, up, m = tc.run_round(round_fn, state, frozen, data, [8] * 8, range(8), key=1)
        return state.server.params, up.params, m

    ref, up_ref, m_ref = run(None)
    new, up, m = run(mesh)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), new, ref)
    np.testing.assert_allclose(m['loss'], m_ref['loss'], rtol=1e-5)
    leaf = jax.tree.leaves(up)[0]
    assert leaf.sharding.spec[0] == CLIENTS and len(leaf.sharding.device_set) == 8
    assert jax.tree.leaves(new)[0].sharding.is_fully_replicated


def test_bad_mesh_sizes_rejected():
    with pytest.raises(ValueError, match='mesh_devices=9'):
        make_client_mesh(9)
    assert make_client_mesh(1) is None


@pytest.mark.parametrize('algorithm', ['fedavg', 'fedema'])
def test_client_count_not_dividing_the_mesh_is_padded(algorithm):
    """K=5 participants on 8 devices: padded with 3 zero-weight clients, the
    round equals the unsharded one (server, every client's state, uploads,
    metrics), and clients that did not take part keep their state."""
    mesh = make_client_mesh(-1)
    spec = tc.stage('layerwise', 1)
    sizes = [8] * 7
    data = tc.images(len(sizes) * 8).reshape(len(sizes), 8, 8, 8, 3)
    selected, reported = [6, 0, 3, 5, 1], [True, True, False, True, True]

    def run(mesh, selected=selected, reported=reported):
        round_fn, state, frozen = tc.make_round(
            spec, 'vmap', tx=optax.sgd(0.05), batch_size=8, epochs=1, n_max=8,
            num_clients=len(sizes), mesh=mesh, algorithm=algorithm)
        new, up, m = tc.run_round(round_fn, state, frozen, data, sizes, selected, key=1,
                                  reported=reported)
        return state, new, up, m

    before, ref, up_ref, m_ref = run(None)
    _, new, up, m = run(mesh)
    # Sharded local training reorders float32 sums; batch-stat BatchNorm on
    # batches of 4 amplifies that to ~1e-4 (test_client.py). Padding clients
    # that counted (below) would move the server by far more.
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=3e-4)
    jax.tree.map(close, new, ref)
    jax.tree.map(close, up, up_ref)
    _, wrong, _, _ = run(None, selected + [6, 6, 6], reported + [True] * 3)
    assert max(float(np.abs(a - b).max()) for a, b in zip(
        jax.tree.leaves(wrong.server.params), jax.tree.leaves(new.server.params))) > 3e-3
    assert jax.tree.leaves(up)[0].shape[0] == 5 and m['loss'].shape == (5,)
    np.testing.assert_allclose(m['loss'], m_ref['loss'], rtol=1e-4)
    np.testing.assert_allclose(m['divergence'], m_ref['divergence'], rtol=1e-3)
    assert m['loss'].sharding.is_fully_replicated   # readable by every process
    for c in (2, 4, 3):   # absent, absent, did not report: state untouched
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[c], b[c]),
                     new.clients, before.clients)
