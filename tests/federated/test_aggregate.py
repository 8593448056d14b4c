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


# --- aggregator registry -------------------------------------------------------

import pytest  # noqa: E402

from lwfedssl_jax.federated.aggregate import (  # noqa: E402
    AGGREGATORS, SERVER_OPTIMIZERS, make_aggregator, make_ldawa, make_server_update)


def _agg(name, rows, weights, global_params, round_in_stage=5, **kw):
    """Aggregates flat dicts: `rows` one per client, leaves as lists/scalars."""
    stacked = {k: jnp.asarray(np.stack([np.asarray(r[k], np.float32) for r in rows]))
               for k in rows[0]}
    g = {k: jnp.asarray(v, jnp.float32) for k, v in global_params.items()}
    return make_aggregator(name, **kw).aggregate(
        g, stacked, jnp.asarray(weights, jnp.float32), jnp.int32(round_in_stage))


def test_fedavg_zero_weight_client_excluded_even_if_nan():
    rows = [{'a': [1.0, 2.0]}, {'a': [3.0, 6.0]}, {'a': [np.nan, np.inf]}]
    out = _agg('fedavg', rows, [1, 3, 0], {'a': [0.0, 0.0]})
    np.testing.assert_allclose(out['a'], [2.5, 5.0])   # (1+9)/4, (2+18)/4


def test_fedavg_all_zero_weights_return_global_exactly():
    g = {'a': np.array([0.1, -7.3], np.float32)}
    out = _agg('fedavg', [{'a': [1.0, 2.0]}, {'a': [3.0, 4.0]}], [0, 0], g)
    np.testing.assert_array_equal(out['a'], g['a'])


def test_ldawa_hand_example_unweighted_mean_of_scaled_tensors():
    # w_g = [1, 0]; cosines: [2,0] -> 1, [0,3] -> 0, [-1,0] -> -1 (no lower clip).
    rows = [{'w': [2.0, 0.0]}, {'w': [0.0, 3.0]}, {'w': [-1.0, 0.0]}]
    out = _agg('ldawa', rows, [5, 1, 7], {'w': [1.0, 0.0]}, round_in_stage=1)
    # ([2,0]*1 + [0,3]*0 + [-1,0]*(-1)) / 3 = [1, 0]; example counts ignored.
    np.testing.assert_allclose(out['w'], [1.0, 0.0], atol=1e-7)


def test_ldawa_partial_cosine_per_leaf():
    # w_g = [3,4] (norm 5). [4,3]: cos = 24/25 = 0.96. [6,8]: cos = 1.
    # Second leaf, w_g = [0,2]: [1,1] -> cos = 2/(sqrt2*2) = 1/sqrt2; [0,5] -> 1.
    rows = [{'a': [4.0, 3.0], 'b': [1.0, 1.0]}, {'a': [6.0, 8.0], 'b': [0.0, 5.0]}]
    out = _agg('ldawa', rows, [1, 1], {'a': [3.0, 4.0], 'b': [0.0, 2.0]})
    np.testing.assert_allclose(out['a'], [(3.84 + 6) / 2, (2.88 + 8) / 2], rtol=1e-6)
    c = 1 / np.sqrt(2)
    np.testing.assert_allclose(out['b'], [c / 2, (c + 5) / 2], rtol=1e-6)


def test_ldawa_cosine_clipped_above_at_one():
    # One-element leaves: the cosine is 1 mathematically, but in float32 it
    # rounds above 1 for some pairs; the clip must keep δ <= 1 (|new| <= |w_k|).
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 10, 128).astype(np.float32)
    g = rng.uniform(0.1, 10, 128).astype(np.float32)
    unclipped = (x * g) / np.sqrt((x * x) * (g * g))
    assert (unclipped > 1).sum() > 0          # the test can see a missing clip
    names = [f'l{i:03d}' for i in range(len(x))]
    out = _agg('ldawa', [{n: x[i:i + 1] for i, n in enumerate(names)}], [1.0],
               {n: g[i:i + 1] for i, n in enumerate(names)})
    new = np.array([out[n][0] for n in names])
    assert np.all(new <= x)
    np.testing.assert_allclose(new, x, rtol=1e-6)


def test_ldawa_0d_leaf_unscaled():
    # Scaled it would be (-3*-1 + 5*1)/2 = 4; unscaled it is (-3 + 5)/2 = 1.
    out = _agg('ldawa', [{'s': -3.0}, {'s': 5.0}], [1, 1], {'s': 2.0})
    np.testing.assert_allclose(out['s'], 1.0)


def test_ldawa_zero_norms_give_delta_one_without_nan():
    rows = [{'b': [1.0, 2.0], 'c': [0.0, 0.0]}, {'b': [3.0, 4.0], 'c': [2.0, 2.0]}]
    out = _agg('ldawa', rows, [1, 1], {'b': [0.0, 0.0], 'c': [1.0, 1.0]})
    np.testing.assert_allclose(out['b'], [2.0, 3.0])     # ‖w_g‖ = 0 -> δ = 1
    np.testing.assert_allclose(out['c'], [1.0, 1.0])     # ‖w_k‖ = 0 row: zeros


def test_ldawa_warmup_rounds_use_fedavg():
    rows = [{'w': [2.0, 0.0]}, {'w': [0.0, 3.0]}, {'w': [-1.0, 0.0]}]
    args = (rows, [1, 1, 2], {'w': [1.0, 0.0]})
    fedavg = [(2 + 0 - 2) / 4, 3 / 4]                     # example-weighted
    np.testing.assert_allclose(_agg('ldawa', *args, round_in_stage=0)['w'], fedavg)
    np.testing.assert_allclose(_agg('ldawa', *args, round_in_stage=1)['w'], [1, 0],
                               atol=1e-7)
    f = jax.jit(make_ldawa(warmup_rounds=3).aggregate)
    stacked = {'w': jnp.asarray([r['w'] for r in rows])}
    for r, want in [(2, fedavg), (3, [1.0, 0.0])]:
        out = f({'w': jnp.array([1.0, 0.0])}, stacked, jnp.array([1.0, 1, 2]),
                jnp.int32(r))
        np.testing.assert_allclose(out['w'], want, atol=1e-7)


def test_ldawa_zero_weight_client_excluded_from_mean():
    rows = [{'w': [2.0, 0.0]}, {'w': [np.nan, 3.0]}, {'w': [-1.0, 0.0]}]
    out = _agg('ldawa', rows, [2, 0, 5], {'w': [1.0, 0.0]})
    np.testing.assert_allclose(out['w'], [1.5, 0.0], atol=1e-7)   # ([2,0]+[1,0])/2


def test_unknown_aggregator_and_bad_kwargs():
    with pytest.raises(ValueError, match=r'server\.aggregator.*fedavg.*ldawa'):
        make_aggregator('krum')
    with pytest.raises(ValueError, match='warmup_rounds'):
        make_aggregator('ldawa', warmup_rounds=-1)
    assert make_aggregator('ldawa', warmup_rounds=2).name == 'ldawa'


def _tree():
    rng = np.random.default_rng(1)
    return {'dense': {'kernel': jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
                      'bias': jnp.zeros((4,), jnp.float32)},
            'scale': jnp.asarray(rng.normal(size=(5,)), jnp.bfloat16),
            'count': jnp.float32(3.0)}


@pytest.mark.parametrize('name', sorted(AGGREGATORS))
def test_aggregator_contract(name):
    g = _tree()
    k = 4
    stacked = jax.tree.map(lambda x: jnp.stack([x] * k), g)
    agg = make_aggregator(name)
    f = jax.jit(agg.aggregate)
    for r in (0, 7):                      # warm-up and steady-state rounds
        out = f(g, stacked, jnp.array([3.0, 0.0, 1.0, 2.0]), jnp.int32(r))
        assert jax.tree.structure(out) == jax.tree.structure(g)
        for o, x in zip(jax.tree.leaves(out), jax.tree.leaves(g)):
            assert o.shape == x.shape and o.dtype == x.dtype
            np.testing.assert_allclose(np.asarray(o, np.float32),
                                       np.asarray(x, np.float32), rtol=1e-2 if
                                       x.dtype == jnp.bfloat16 else 1e-6)
    nan_uploads = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), stacked)
    out = f(g, nan_uploads, jnp.zeros((k,)), jnp.int32(7))
    for o, x in zip(jax.tree.leaves(out), jax.tree.leaves(g)):
        np.testing.assert_array_equal(np.asarray(o, np.float32), np.asarray(x, np.float32))


# --- server optimiser ---------------------------------------------------------

def test_server_none_returns_aggregate_exactly():
    su = make_server_update('none')
    g, a = {'w': jnp.array([1.0, 2.0])}, {'w': jnp.array([0.3, -0.7])}
    state = su.init(g)
    assert state == ()
    new, state = su.apply(g, a, state)
    assert new['w'] is a['w'] and state == ()


def test_server_sgd_lr1_no_momentum_reproduces_aggregate():
    su = make_server_update('sgd', learning_rate=1.0, momentum=0.0)
    g, a = {'w': jnp.array([1.0, 2.0, -3.0])}, {'w': jnp.array([0.3, -0.7, 5.0])}
    new, _ = su.apply(g, a, su.init(g))
    np.testing.assert_allclose(new['w'], a['w'], rtol=1e-6)


def test_server_fedavgm_two_rounds_hand_computed():
    # optax.sgd(momentum): v_t = g_t + m v_{t-1}; x_t = x_{t-1} - lr v_t.
    su = make_server_update('sgd', learning_rate=0.5, momentum=0.9)
    x0 = {'w': jnp.array([1.0, 2.0])}
    state = su.init(x0)
    x1, state = su.apply(x0, {'w': jnp.array([0.0, 1.0])}, state)   # g1 = [1, 1]
    np.testing.assert_allclose(x1['w'], [0.5, 1.5])
    x2, state = su.apply(x1, {'w': jnp.array([0.5, 0.5])}, state)   # g2 = [0, 1]
    # v2 = 0.9*[1,1] + [0,1] = [0.9, 1.9]; x2 = [0.5, 1.5] - 0.5*v2
    np.testing.assert_allclose(x2['w'], [0.05, 0.55], rtol=1e-6)


def test_server_fedadam_first_step_hand_computed():
    # Step 1 of bias-corrected Adam: m̂ = g, v̂ = g², update = -lr g / (|g| + eps).
    lr, eps = 0.1, 1e-3
    su = make_server_update('adam', learning_rate=lr, b1=0.9, b2=0.99, eps=eps)
    x0 = {'w': jnp.array([1.0, 2.0, 3.0])}
    new, _ = su.apply(x0, {'w': jnp.array([0.5, 2.0, 5.0])}, su.init(x0))
    grad = np.array([0.5, 0.0, -2.0])
    np.testing.assert_allclose(
        new['w'], [1 - lr * 0.5 / 0.501, 2.0, 3 + lr * 2 / 2.001], rtol=1e-6)
    assert abs(grad[0] / (abs(grad[0]) + eps) - 0.5 / 0.501) < 1e-12


def test_server_update_validation():
    with pytest.raises(ValueError, match=r'server\.optimizer.*none.*sgd.*adam'):
        make_server_update('lamb')
    with pytest.raises(ValueError, match=r'server\.learning_rate'):
        make_server_update('sgd', learning_rate=0.0)
    with pytest.raises(ValueError, match=r'server\.momentum'):
        make_server_update('sgd', momentum=1.0)
    with pytest.raises(ValueError, match=r'server\.momentum'):
        make_server_update('sgd', momentum=-0.1)


@pytest.mark.parametrize('optimizer', SERVER_OPTIMIZERS)
def test_server_update_contract(optimizer):
    su = make_server_update(optimizer, learning_rate=0.5, momentum=0.5)
    g = _tree()
    a = jax.tree.map(lambda x: (x * 0.5).astype(x.dtype), g)
    state = jax.jit(su.init)(g)
    apply = jax.jit(su.apply)
    for _ in range(2):
        new, state = apply(g, a, state)
        assert jax.tree.structure(new) == jax.tree.structure(g)
        for o, x in zip(jax.tree.leaves(new), jax.tree.leaves(g)):
            assert o.shape == x.shape and o.dtype == x.dtype
            assert np.all(np.isfinite(np.asarray(o, np.float32)))
        g = new
    if optimizer == 'none':
        assert state == ()
