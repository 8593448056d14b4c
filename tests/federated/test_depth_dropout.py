"""Depth dropout: skipped frozen blocks are identities, the drop mask is per
client per round, and both FLOP counts fall by the expected amount."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import test_client as tc   # noqa: E402  (tests/federated/test_client.py)
from configs import quickstart
from lwfedssl_jax import builders, public_set, run_state
from lwfedssl_jax.accounting import flops
from lwfedssl_jax.federated import client as client_lib
from lwfedssl_jax.federated.algorithms.base import StepContext
from lwfedssl_jax.models.vit import ViTConfig, ViTEncoder, block_name
import backbones   # noqa: E402  (tests/backbones.py)
from lwfedssl_jax.stages import make_stage_plan
from lwfedssl_jax.utils.tree import select

CFG4 = ViTConfig(image_size=8, patch_size=4, width=16, depth=4, num_heads=2, mlp_dim=32)


def test_skipped_blocks_are_identities():
    enc = ViTEncoder(CFG4)
    params = enc.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    keep = jnp.asarray([True, False, True, False])
    got = enc.run_segment(params, x, 0, 4, keep)
    # By hand: embed, block 0, block 2 (1 and 3 skipped).
    h = enc.run_segment(params, x, 0, 1)
    h = enc.run_segment({block_name(2): params[block_name(2)]}, h, 2, 3)
    np.testing.assert_allclose(got, h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(enc.run_segment(params, x, 0, 4, jnp.ones(4, bool)),
                               enc.run_segment(params, x, 0, 4), rtol=1e-5, atol=1e-5)


def test_a_step_with_a_dropped_block_equals_one_on_the_shorter_model():
    spec = make_stage_plan('layerwise', backbone=backbones.vit(4), blocks_per_stage=1, total_rounds=4,
                           head_names=tc.METHOD.head_names)[3]   # 3 frozen blocks
    enc = ViTEncoder(CFG4)
    params = {**enc.init(jax.random.key(0)),
              **tc.METHOD.init_heads(jax.random.key(1), CFG4.width)}
    # Plain SGD: updates proportional to gradients (Adam would amplify the
    # rounding noise of gradients that are zero in exact arithmetic, such as
    # the attention key biases').
    local = client_lib.make_local_step(enc, tc.METHOD, spec, optax.sgd(0.1), tc.AUG)
    frozen, trainable = select(params, spec.frozen), select(params, spec.trainable)
    args = (frozen, trainable, local.init_target(trainable),
            local.init_opt(frozen, trainable), tc.images(8), jax.random.key(5),
            select(params, spec.exchanged))
    keep = jnp.asarray([True, False, True, True])   # [num_blocks]; block 3 is trained
    dropped = local.step(*args, StepContext(keep_blocks=keep), 0.99)
    # Second path: block 1 replaced by an identity (zero residual branches
    # make a pre-LN block exactly the identity).
    ident = jax.tree.map(jnp.zeros_like, frozen[block_name(1)])
    zeroed = local.step(*(({**frozen, block_name(1): ident},) + args[1:]), StepContext(), 0.99)
    for a, b in zip(jax.tree.leaves(dropped), jax.tree.leaves(zeroed)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_paper_flops_count_frozen_blocks_at_one_minus_p():
    spec = make_stage_plan('layerwise', backbone=backbones.vit(4), blocks_per_stage=1, total_rounds=4,
                           head_names=tc.METHOD.head_names)[3]
    enc = ViTEncoder(CFG4)
    heads = tc.METHOD.init_heads(jax.random.key(1), CFG4.width)
    base = flops.per_sample_epoch_macs(enc, spec, heads)
    dd = flops.per_sample_epoch_macs(enc, spec, heads, depth_dropout=0.3)
    block = enc.part_forward_macs(block_name(0))
    np.testing.assert_allclose(base - dd, 0.3 * 3 * block, rtol=1e-12)


@pytest.fixture(scope='module')
def stage_rows():
    """Last-stage resource rows of the quickstart model, p = 0 and 0.5, in
    layer-wise and progressive mode."""
    rows = {}
    for mode, p in (('layerwise', 0.0), ('layerwise', 0.5), ('progressive', 0.0),
                    ('progressive', 0.5)):
        config = quickstart.get_config(f'mode={mode}')
        config.unlock()
        config.fl.depth_dropout = p
        config.log.step_flops = 'last_stage'
        setup = builders.build(config)
        spec = setup.plan[-1]
        params = run_state.abstract_params(setup, config, spec.index)
        fns = builders.build_stage(setup, spec, config, 4, 340)
        state = jax.eval_shape(lambda q: builders.init_round_state(setup, fns, spec, q, 4),
                               params)
        rows[mode, p] = builders.stage_resources(
            setup, spec, setup.plan[-2], params, state,
            public_set.abstract_public(setup, config), fns, config)
    return rows


@pytest.mark.parametrize('mode', ['layerwise', 'progressive'])
def test_xla_step_flops_fall_by_the_skipped_blocks(stage_rows, mode):
    base, dd = stage_rows[mode, 0.0], stage_rows[mode, 0.5]
    assert dd['step_flops_no_dropout'] == base['step_flops']
    saving = dd['block_dropout_saving_flops']
    # 3 droppable blocks at the last of 4 stages, each skipped w.p. 0.5.
    np.testing.assert_allclose(dd['step_flops'], base['step_flops'] - 0.5 * 3 * saving,
                               rtol=1e-9)
    # Skipping a trained block saves its backward too: about 3x a frozen one.
    assert saving > 0
    if mode == 'progressive':
        ratio = saving / stage_rows['layerwise', 0.5]['block_dropout_saving_flops']
        assert 2.0 < ratio < 4.5, ratio
    assert dd['paper_flops_per_round'] < base['paper_flops_per_round']


def test_progressive_paper_flops_count_earlier_trained_blocks_at_one_minus_p():
    spec = make_stage_plan('progressive', backbone=backbones.vit(4), blocks_per_stage=1, total_rounds=4,
                           head_names=tc.METHOD.head_names)[3]
    assert spec.droppable_blocks == 3 and spec.frozen_blocks == 0
    enc = ViTEncoder(CFG4)
    heads = tc.METHOD.init_heads(jax.random.key(1), CFG4.width)
    base = flops.per_sample_epoch_macs(enc, spec, heads)
    dd = flops.per_sample_epoch_macs(enc, spec, heads, depth_dropout=0.3)
    np.testing.assert_allclose(base - dd, 0.3 * 3 * 3 * enc.part_forward_macs(block_name(0)),
                               rtol=1e-12)


def test_progressive_blocks_are_averaged_over_the_clients_that_kept_them():
    spec = tc.stage('progressive', 1)         # blocks 0 (droppable) and 1 (new)
    round_fn, state, frozen = tc.make_round(spec, depth_dropout=0.5)
    data = tc.images(64).reshape(4, 16, 8, 8, 3)
    sizes = np.array([16, 8, 12, 4])
    new, uploads, metrics = tc.run_round(round_fn, state, frozen, data, sizes, [0, 1, 2, 3],
                                         key=11)
    keep = np.asarray(metrics['keep'])
    assert keep.shape == (4, 2) and keep[:, 1].all()
    assert 0 < keep[:, 0].sum() < 4, keep   # this key drops block 0 for some clients
    for part, kept in (('block_00', keep[:, 0]), ('block_01', keep[:, 1])):
        w = sizes * kept
        jax.tree.map(lambda g, u: np.testing.assert_allclose(
            g, np.tensordot(w / w.sum(), np.asarray(u, np.float64), axes=1),
            rtol=1e-5, atol=1e-6), new.server.params[part], uploads.params[part])
    # The masks are the accounting's: redrawn from the clients' round keys.
    from lwfedssl_jax.federated.client import depth_dropout_keep
    key = jax.random.key(11)
    again = np.stack([np.asarray(depth_dropout_keep(jax.random.fold_in(key, c), spec, 0.5))
                      for c in range(4)])
    np.testing.assert_array_equal(again, keep)
