"""Depth dropout: skipped frozen blocks are identities, the drop mask is per
client per round, and both FLOP counts fall by the expected amount."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import test_client as tc   # noqa: E402  (tests/federated/test_client.py)
from configs import quickstart
from lwfedssl_jax import builders, public_set, train
from lwfedssl_jax.accounting import flops
from lwfedssl_jax.federated import client as client_lib
from lwfedssl_jax.federated.algorithms.base import StepContext
from lwfedssl_jax.models.vit import ViTConfig, ViTEncoder, block_name
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
    np.testing.assert_allclose(got, h, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(enc.run_segment(params, x, 0, 4, jnp.ones(4, bool)),
                               enc.run_segment(params, x, 0, 4), rtol=1e-6, atol=1e-6)


def test_a_step_with_a_dropped_block_equals_one_on_the_shorter_model():
    spec = make_stage_plan('layerwise', depth=4, blocks_per_stage=1, total_rounds=4,
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
    keep = jnp.asarray([True, False, True])
    dropped = local.step(*args, StepContext(keep_blocks=keep), 0.99)
    # Second path: block 1 replaced by an identity (zero residual branches
    # make a pre-LN block exactly the identity).
    ident = jax.tree.map(jnp.zeros_like, frozen[block_name(1)])
    zeroed = local.step(*(({**frozen, block_name(1): ident},) + args[1:]), StepContext(), 0.99)
    for a, b in zip(jax.tree.leaves(dropped), jax.tree.leaves(zeroed)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_paper_flops_count_frozen_blocks_at_one_minus_p():
    spec = make_stage_plan('layerwise', depth=4, blocks_per_stage=1, total_rounds=4,
                           head_names=tc.METHOD.head_names)[3]
    enc = ViTEncoder(CFG4)
    heads = tc.METHOD.init_heads(jax.random.key(1), CFG4.width)
    base = flops.per_sample_epoch_macs(enc, spec, heads)
    dd = flops.per_sample_epoch_macs(enc, spec, heads, depth_dropout=0.3)
    block = enc.part_forward_macs(block_name(0))
    np.testing.assert_allclose(base - dd, 0.3 * 3 * block, rtol=1e-12)


@pytest.fixture(scope='module')
def stage_rows():
    """Last-stage resource rows of the quickstart model, p = 0 and 0.5."""
    rows = {}
    for p in (0.0, 0.5):
        config = quickstart.get_config('mode=layerwise')
        config.unlock()
        config.fl.depth_dropout = p
        config.log.step_flops = 'last_stage'
        setup = builders.build(config)
        spec = setup.plan[-1]
        params = train.abstract_params(setup, config, spec.index)
        fns = builders.build_stage(setup, spec, config, 4, 340)
        state = jax.eval_shape(lambda q: builders.init_round_state(setup, fns, spec, q, 4),
                               params)
        rows[p] = builders.stage_resources(setup, spec, setup.plan[-2], params, state,
                                           public_set.abstract_public(setup, config), fns,
                                           config)
        rows[p]['block'] = builders.block_forward_flops(setup.encoder, params,
                                                         config.fl.batch_size)
    return rows


def test_xla_step_flops_fall_by_the_skipped_blocks(stage_rows):
    base, dd = stage_rows[0.0], stage_rows[0.5]
    assert dd['step_flops_no_dropout'] == base['step_flops']
    # 3 frozen blocks, each skipped w.p. 0.5, on both views.
    np.testing.assert_allclose(dd['step_flops'],
                               base['step_flops'] - 0.5 * 3 * 2 * dd['block'], rtol=1e-9)
    assert dd['step_flops'] < base['step_flops']
    # The block's XLA count is close to the model's own MAC count x 2.
    assert dd['block'] > 0
    assert dd['paper_flops_per_round'] < base['paper_flops_per_round']
