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
