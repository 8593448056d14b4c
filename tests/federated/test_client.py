"""Client engine: partial differentiation, execution strategies, ragged data."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lwfedssl_jax import ssl
from lwfedssl_jax.data.augment import AugmentConfig
from lwfedssl_jax.federated import addons, aggregate, algorithms
from lwfedssl_jax.federated import client as client_lib, execution as execution_lib
from lwfedssl_jax.federated.algorithms.base import PublicData, StepContext
from lwfedssl_jax.federated.round import init_round_state, make_round_fn
from lwfedssl_jax.models.vit import ViTConfig, ViTEncoder
import backbones   # noqa: E402  (tests/backbones.py)
from lwfedssl_jax.stages import make_stage_plan
from lwfedssl_jax.utils.tree import select

CFG = ViTConfig(image_size=8, patch_size=4, width=16, depth=2, num_heads=2, mlp_dim=32)
AUG = AugmentConfig()
METHOD = ssl.get('mocov3')(temperature=0.2, proj_hidden=16, proj_dim=8, pred_hidden=16)
ENC = ViTEncoder(CFG)


def full_params(seed=0):
    heads = METHOD.init_heads(jax.random.key(seed + 100), CFG.width)
    return {**ENC.init(jax.random.key(seed)), **heads}


def stage(mode, index):
    return make_stage_plan(mode, backbone=backbones.vit(2), blocks_per_stage=1, total_rounds=2,
                           head_names=METHOD.head_names)[index]


def tx_for(spec):
    return client_lib.make_client_optimizer(spec, learning_rate=1e-2,
                                            weight_decay=1e-4, b1=0.9, b2=0.999)


def images(n, seed=0):
    return jax.random.randint(jax.random.key(seed), (n, 8, 8, 3), 0, 256).astype(jnp.uint8)


def test_partial_grad_step_equals_masked_full_grad_step():
    """Second code path: grads of ALL params + optax.partition(set_to_zero)."""
    spec = stage('layerwise', 1)
    params = full_params()
    local = client_lib.make_local_step(ENC, METHOD, spec, tx_for(spec), AUG)
    frozen, trainable = select(params, spec.frozen), select(params, spec.trainable)
    target = local.init_target(trainable)
    opt = local.init_opt(frozen, trainable)
    x, key = images(8), jax.random.key(5)
    new_tr, new_tg, _, loss = local.step(frozen, trainable, target, opt, x, key,
                                         select(params, spec.exchanged), StepContext(),
                                         0.99)
    # Target: EMA (0.99) of the updated online weights; no predictor copy.
    assert set(new_tg) == set(spec.trainable) - {'predictor'}
    jax.tree.map(lambda t, t0, o: np.testing.assert_allclose(
        t, 0.99 * t0 + 0.01 * o, rtol=1e-6, atol=1e-7),
        new_tg, target, {k: new_tr[k] for k in new_tg})

    # Reference: differentiate the whole present model, no stop_gradient.
    from lwfedssl_jax.data import augment
    v1, v2 = augment.two_views(key, x, AUG)

    def loss_all(p):
        encode = lambda q, h: ENC.features(q, h, spec.num_blocks)
        tgt = {**{k: p[k] for k in spec.frozen}, **target}
        return METHOD.loss_fn(p, tgt, encode, v1, v2)[0]

    ref_loss, g = jax.value_and_grad(loss_all)(params)
    assert float(jnp.abs(g['block_00']['fc_1']['kernel']).max()) > 0  # would train
    tx = tx_for(spec)
    upd, _ = tx.update(g, tx.init(params), params)
    ref = optax.apply_updates(params, upd)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    # Parameters whose gradient is zero by symmetry (the attention key bias:
    # softmax is shift-invariant; the final norm's bias: the projector's
    # bias-free Linear + BatchNorm removes it) get round-off gradients that
    # Adam's first step turns into +-lr: the two paths (prefix on both views
    # as one batch vs one view at a time) round differently. Those must
    # still move by at most lr; everything else agrees closely.
    lr = 1e-2
    for k in spec.trainable:
        for path, a in jax.tree_util.tree_leaves_with_path(new_tr[k]):
            b, before = ref[k], params[k]
            for entry in path:
                b, before = b[entry.key], before[entry.key]
            name = jax.tree_util.keystr(path)
            if "['key']['bias']" in name or (k == 'norm' and name == "['bias']"):
                assert np.abs(a - before).max() <= 1.01 * lr, (k, name)
            else:
                np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6, err_msg=k + name)
    for k in spec.frozen:   # the mask keeps frozen parts exactly
        jax.tree.map(np.testing.assert_array_equal, ref[k], params[k])


NO_PUBLIC = PublicData(jnp.zeros((0, 8, 8, 3), jnp.uint8), jnp.zeros((0, 0)))


def make_round(spec, execution='map', chunk=0, tx=None, batch_size=4, epochs=2,
               n_max=16, num_clients=4, algorithm='fedavg', mesh=None, method=METHOD,
               addon_kwargs=None, depth_dropout=0.0, **algorithm_kwargs):
    """(round_fn, initial round state) of a tiny run with `algorithm` and the
    add-ons `addon_kwargs` ({name: kwargs})."""
    params = full_params()
    algo = algorithms.get(algorithm)(spec=spec, method=method, num_clients=num_clients,
                                     max_examples=n_max, rep_dim=8, **algorithm_kwargs)
    addon_kwargs = addon_kwargs or {}
    algo = addons.with_addons(algo, addons.make_addons(tuple(addon_kwargs), spec,
                                                       addon_kwargs))
    local = client_lib.make_local_step(ENC, method, spec, tx or tx_for(spec), AUG,
                                       algo.loss_terms)
    train = client_lib.make_local_train(local, spec, algo, method, batch_size=batch_size,
                                        epochs=epochs, max_examples=n_max, total_rounds=4,
                                        depth_dropout=depth_dropout)
    server = aggregate.make_server_update('none')
    round_fn = make_round_fn(execution_lib.make_clients_update(train, execution, chunk),
                             algo, aggregate.make_aggregator('fedavg'), server, mesh,
                             dropout_blocks=spec.block_parts if depth_dropout > 0 else ())
    state = init_round_state(algo, server, params, spec.exchanged, num_clients)
    return round_fn, state, select(params, spec.frozen)


def run_round(round_fn, state, frozen, data, sizes, selected, key=3, public=NO_PUBLIC,
              reported=None):
    return round_fn(frozen, state, jnp.asarray(data), jnp.asarray(sizes, jnp.int32),
                    jnp.asarray(selected, jnp.int32),
                    jnp.ones(len(selected), bool) if reported is None else jnp.asarray(reported),
                    jnp.int32(0), jnp.int32(0), jax.random.key(key), public)


def _round(spec, execution, chunk=0, sizes=(10, 7, 16, 3), n_max=16, garbage=False,
           tx=None, batch_size=4, epochs=2, selected=None):
    round_fn, state, frozen = make_round(spec, execution, chunk, tx, batch_size, epochs,
                                         n_max, len(sizes))
    data = np.array(images(len(sizes) * n_max)).reshape(len(sizes), n_max, 8, 8, 3)
    for c, n in enumerate(sizes):   # padding rows: zeros, or garbage
        data[c, n:] = 255 if garbage else 0
    new_state, uploads, metrics = run_round(
        round_fn, state, frozen, data, sizes,
        range(len(sizes)) if selected is None else selected)
    return (new_state.server.params, uploads.params, metrics), round_fn


def test_execution_strategies_agree():
    # Float32 op-order noise differs between strategies and grows chaotically
    # over steps (batch-stat BN on tiny random batches; Adam turns exactly-zero
    # gradients such as attention key biases into +-lr). With float64 the
    # strategies agree to round-off, so compare few SGD steps in float32.
    spec = stage('layerwise', 1)
    kw = dict(tx=optax.sgd(0.05), batch_size=8, epochs=1, sizes=(16, 12, 8, 5))
    (ref, up_ref, m_ref), _ = _round(spec, 'vmap', **kw)
    for execution, chunk in [('map', 0), ('chunked', 2)]:
        (new, up, m), _ = _round(spec, execution, chunk, **kw)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                     new, ref)
        np.testing.assert_allclose(m['loss'], m_ref['loss'], rtol=1e-4)


def test_ragged_clients_step_counts_and_padding_is_never_read():
    spec = stage('layerwise', 0)
    (new, uploads, m), _ = _round(spec, 'map')
    # E * ceil(n / B) with E=2, B=4 for sizes 10, 7, 16, 3.
    np.testing.assert_array_equal(m['steps'], [6, 4, 8, 2])
    (new2, _, m2), _ = _round(spec, 'map', garbage=True)
    jax.tree.map(np.testing.assert_array_equal, new, new2)
    # FedAvg by example count over the uploads.
    w = np.array([10, 7, 16, 3], np.float32)
    leaf = uploads['projector']['fc_0']['kernel']
    np.testing.assert_allclose(new['projector']['fc_0']['kernel'],
                               np.einsum('k,k...->...', w / w.sum(), leaf), rtol=1e-5)


def test_partial_participation_averages_only_selected_clients():
    spec = stage('layerwise', 0)
    (full, up_full, _), _ = _round(spec, 'map')
    (new, uploads, m), _ = _round(spec, 'map', selected=[0, 2])
    assert uploads['norm']['scale'].shape[0] == 2
    # A client's upload depends only on its data and key, not on who else ran.
    jax.tree.map(np.testing.assert_array_equal, uploads,
                 jax.tree.map(lambda x: x[np.array([0, 2])], up_full))
    w = np.array([10, 16], np.float32)   # weights renormalised over the two
    leaf = uploads['norm']['scale']
    np.testing.assert_allclose(new['norm']['scale'],
                               (w[0] * leaf[0] + w[1] * leaf[1]) / w.sum(), rtol=1e-6)


def test_round_traces_once_across_rounds():
    spec = stage('layerwise', 1)
    round_fn, state, frozen = make_round(spec)
    data = jnp.zeros((4, 16, 8, 8, 3), jnp.uint8)
    for r, selected in enumerate([[0, 1], [2, 3], [1, 3]]):   # who takes part varies
        state, _, _ = round_fn(frozen, state, data, jnp.full((4,), 16, jnp.int32),
                               jnp.asarray(selected, jnp.int32), jnp.asarray([r > 0, True]),
                               jnp.int32(r), jnp.int32(r), jax.random.key(r), NO_PUBLIC)
    assert round_fn.num_traces == 1


def test_layerwise_step_costs_less_than_e2e():
    from lwfedssl_jax.accounting.xla_cost import abstract, compiled_flops
    params = full_params()

    def flops(spec):
        local = client_lib.make_local_step(ENC, METHOD, spec, tx_for(spec), AUG)
        fr, tr = abstract(select(params, spec.frozen)), abstract(select(params, spec.trainable))
        return compiled_flops(local.step, fr, tr, jax.eval_shape(local.init_target, tr),
                              jax.eval_shape(local.init_opt, fr, tr),
                              jax.ShapeDtypeStruct((16, 8, 8, 3), jnp.uint8),
                              jax.random.key(0), abstract(select(params, spec.exchanged)),
                              StepContext(), 0.99)

    lw, e2e = flops(stage('layerwise', 1)), flops(stage('e2e', 0))
    assert lw < 0.8 * e2e


def test_bad_execution_rejected():
    with pytest.raises(ValueError, match='client_execution'):
        execution_lib.make_clients_update(lambda *a: a, 'pmap')
    with pytest.raises(ValueError, match='client_chunk'):
        execution_lib.make_clients_update(lambda *a: a, 'chunked', 0)
