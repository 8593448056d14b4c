"""Clients split over a device mesh (8 fake CPU devices) give the same round."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lwfedssl_jax.federated import client as client_lib
from lwfedssl_jax.federated.round import make_round_fn
from lwfedssl_jax.sharding import CLIENTS, make_client_mesh
from lwfedssl_jax.utils.tree import select

import test_client as tc   # noqa: E402  (tiny model helpers of the client tests)


def test_mesh_sharded_round_matches_single_device():
    mesh = make_client_mesh(-1)
    assert mesh.size == 8
    spec = tc.stage('layerwise', 1)
    params = tc.full_params()
    local = client_lib.make_local_step(tc.ENC, tc.METHOD, spec, optax.sgd(0.05), tc.AUG)
    train = client_lib.make_local_train(local, spec, batch_size=8, epochs=1, max_examples=8)
    update = client_lib.make_clients_update(train, 'vmap')
    data = tc.images(8 * 8).reshape(8, 8, 8, 8, 3)
    args = (select(params, spec.frozen), select(params, spec.exchanged), data,
            jnp.full((8,), 8, jnp.int32), jnp.arange(8, dtype=jnp.int32), jax.random.key(1))
    ref, up_ref, m_ref = make_round_fn(update)(*args)
    new, up, m = make_round_fn(update, mesh)(*args)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), new, ref)
    np.testing.assert_allclose(m['loss'], m_ref['loss'], rtol=1e-5)
    leaf = jax.tree.leaves(up)[0]
    assert leaf.sharding.spec[0] == CLIENTS and len(leaf.sharding.device_set) == 8
    assert jax.tree.leaves(new)[0].sharding.is_fully_replicated


def test_bad_mesh_sizes_rejected():
    with pytest.raises(ValueError, match='mesh_devices=9'):
        make_client_mesh(9)
    assert make_client_mesh(1) is None
