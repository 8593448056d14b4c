import jax
import jax.numpy as jnp
import numpy as np

from lwfedssl_jax.federated.aggregate import make_sharded_weighted_mean, weighted_mean


def test_weighted_mean_hand_computed():
    stacked = {'a': jnp.array([[1.0, 2.0], [3.0, 6.0], [10.0, 0.0]]),
               'b': {'c': jnp.array([1.0, 4.0, 7.0])}}
    out = weighted_mean(stacked, jnp.array([1, 3, 0]))
    # (1*1 + 3*3)/4 = 2.5, (1*2 + 3*6)/4 = 5; third client has zero weight.
    np.testing.assert_allclose(out['a'], [2.5, 5.0])
    np.testing.assert_allclose(out['b']['c'], (1 + 12) / 4)


def test_sharded_weighted_mean_matches_numpy_on_8_devices():
    assert jax.device_count() == 8
    mesh = jax.make_mesh((8,), ('clients',),
                         axis_types=(jax.sharding.AxisType.Auto,))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 5, 3)).astype(np.float32)
    w = rng.integers(1, 100, size=16).astype(np.float32)
    out = make_sharded_weighted_mean(mesh)({'x': jnp.asarray(x)}, jnp.asarray(w))
    np.testing.assert_allclose(out['x'], np.einsum('k,kij->ij', w, x) / w.sum(),
                               rtol=1e-5, atol=1e-6)
    assert out['x'].sharding.is_fully_replicated
