"""The client step's gradient one view at a time (`federated/views.py`):
the same numbers as differentiating the method's two-view loss, and less
compiled memory."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lwfedssl_jax import ssl
from lwfedssl_jax.accounting.xla_cost import compiled_cost
from lwfedssl_jax.data.augment import AugmentConfig
from lwfedssl_jax.federated import algorithms
from lwfedssl_jax.federated import client as client_lib
from lwfedssl_jax.federated.algorithms.base import StepContext
from lwfedssl_jax.federated.views import views_in_turn
from lwfedssl_jax.ssl.base import Negatives
from lwfedssl_jax.models.vit import ViTConfig, ViTEncoder
from lwfedssl_jax.stages import make_stage_plan
from lwfedssl_jax.utils.tree import select

CFG = ViTConfig(image_size=8, patch_size=4, width=16, depth=2, num_heads=2, mlp_dim=32)
ENC = ViTEncoder(CFG)


def method_of(name):
    heads = dict(proj_hidden=16, proj_dim=8)
    if name != 'simclr':   # the methods with a predictor
        heads['pred_hidden'] = 16
    return ssl.get(name)(**heads)


def split_methods():
    return [name for name in sorted(ssl.METHODS) if method_of(name).splits_views]


def test_mocov3_and_byol_split_their_loss_and_simclr_does_not():
    assert {'mocov3', 'byol'} <= set(split_methods())
    assert not method_of('simclr').splits_views


@pytest.mark.parametrize('name', split_methods())
@pytest.mark.parametrize('with_negatives', [False, True])
def test_views_in_turn_gives_the_joint_loss_and_gradient(name, with_negatives):
    method = method_of(name)
    if with_negatives and not method.supports_negatives:
        pytest.skip('no negatives')
    params = {**ENC.init(jax.random.key(0)), **method.init_heads(jax.random.key(1), 16)}
    online = select(params, ('block_01', 'norm') + method.head_names)
    target = jax.tree.map(lambda a: a * 1.05, select(online, ('block_01', 'norm', 'projector')))
    h = jax.random.normal(jax.random.key(2), (2, 6, CFG.num_tokens, 16))
    encode = lambda p, x: ENC.head_input(p, ENC.run_segment(p, x, 1, 2), 2)
    negatives = (Negatives(jax.random.normal(jax.random.key(3), (5, 8)),
                           jnp.array([True, True, False, True, True]))
                 if with_negatives else None)

    def joint(p):
        return method.loss_fn(p, target, encode, h[0], h[1], negatives)[0]

    ref_loss, ref_grads = jax.jit(jax.value_and_grad(joint))(online)
    loss, grads = jax.jit(lambda p: views_in_turn(method, p, target, encode, h, negatives,
                                                  lambda t: t))(online)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(ref_grads)) > 0
    assert_close(grads, ref_grads)
    # The gradient does not reach the target branch.
    g_target = jax.grad(lambda t: views_in_turn(method, online, t, encode, h, negatives,
                                                lambda x: x)[0])(target)
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(g_target))


def assert_close(got, want):
    """Equal up to float32 round-off, relative to the largest value (some
    gradients are zero by symmetry: the attention key bias, the final
    norm's bias before a bias-free Linear + BatchNorm; both paths give them
    round-off noise)."""
    scale = max(float(jnp.abs(b).max()) for b in jax.tree.leaves(want))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * scale),
                 got, want)


def _step(method, spec, sequential, loss_terms=(), tx=None):
    tx = tx or optax.sgd(0.5)   # update = -0.5 * gradient: compares gradients
    return client_lib.make_local_step(ENC, method, spec, tx, AugmentConfig(), loss_terms,
                                      views_in_turn=sequential)


@pytest.mark.parametrize('mode', ['layerwise', 'e2e'])
def test_the_client_step_is_the_joint_step_with_and_without_loss_terms(mode):
    method = method_of('mocov3')
    spec = make_stage_plan(mode, backbone=ENC, blocks_per_stage=1, total_rounds=2,
                           head_names=method.head_names)[-1]
    params = {**ENC.init(jax.random.key(0)), **method.init_heads(jax.random.key(1), 16)}
    frozen, trainable = select(params, spec.frozen), select(params, spec.trainable)
    # FedCA's alignment term: an extra loss on public data, added to both.
    algo = algorithms.get('fedca')(spec=spec, method=method, num_clients=2, max_examples=8,
                                   rep_dim=8)
    assert algo.loss_terms
    images = jax.random.randint(jax.random.key(4), (6, 8, 8, 3), 0, 256).astype(jnp.uint8)
    # With FedCA's step context: dictionary negatives and public images.
    fedca_context = StepContext(
        negatives=Negatives(jax.random.normal(jax.random.key(6), (5, 8)),
                            jnp.array([True, True, False, True, True])),
        public_images=jax.random.randint(jax.random.key(7), (10, 8, 8, 3), 0,
                                         256).astype(jnp.uint8),
        public_targets=jax.random.normal(jax.random.key(8), (10, 8)))
    for terms, context in (((), StepContext()), (algo.loss_terms, fedca_context)):
        outs = []
        for sequential in (True, False):
            local = _step(method, spec, sequential, terms)
            target = local.init_target(trainable)
            outs.append(jax.jit(local.step)(frozen, trainable, target,
                                            local.init_opt(frozen, trainable), images,
                                            jax.random.key(5), select(params, spec.exchanged),
                                            context, 0.99))
        (tr, tg, _, loss), (ref_tr, ref_tg, _, ref_loss) = outs
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
        moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), ref_tr, trainable)
        assert max(jax.tree.leaves(moved)) > 0
        assert_close((tr, tg), (ref_tr, ref_tg))


def _step_cost(enc, method, mode: str, batch: int, counted: bool = False, **step_kwargs):
    """XLA cost of the last `mode` stage's MoCo v3 step (or of its
    `counted_step`), `step_kwargs` passed to `make_local_step`."""
    spec = make_stage_plan(mode, backbone=enc, blocks_per_stage=1, total_rounds=3,
                           head_names=method.head_names)[-1]
    params = {**enc.init(jax.random.key(0)),
              **method.init_heads(jax.random.key(1), enc.head_width)}
    tx = client_lib.make_client_optimizer(spec, learning_rate=1e-3, weight_decay=0.0,
                                          b1=0.9, b2=0.999)
    local = client_lib.make_local_step(enc, method, spec, tx, AugmentConfig(), **step_kwargs)
    fr, tr = select(params, spec.frozen), select(params, spec.trainable)
    size = enc.cfg.image_size
    return compiled_cost(local.counted_step if counted else local.step, fr, tr,
                         local.init_target(tr), local.init_opt(fr, tr),
                         jax.ShapeDtypeStruct((batch, size, size, 3), jnp.uint8),
                         jax.random.key(0), tr, StepContext(), jnp.float32(0.99))


def test_views_in_turn_lowers_the_compiled_memory_of_a_layerwise_step():
    # Measured 19.0 MB one view at a time, 32.5 MB differentiated jointly.
    cfg = ViTConfig(image_size=16, patch_size=2, width=64, depth=3, num_heads=2, mlp_dim=256)
    enc, method = ViTEncoder(cfg), ssl.get('mocov3')(proj_hidden=64, proj_dim=32,
                                                       pred_hidden=64)
    one_at_a_time, joint = (
        _step_cost(enc, method, 'layerwise', 32, views_in_turn=s).memory_bytes
        for s in (True, False))
    assert one_at_a_time < 0.8 * joint, (one_at_a_time, joint)


def _e2e_step_cost(sequential: bool, remat: str, counted: bool):
    return _step_cost(ENC, method_of('mocov3'), 'e2e', 8, counted,
                      views_in_turn=sequential, remat=remat)


def test_flops_are_counted_on_the_loop_free_step():
    # A step without loops (both views jointly, no remat) is counted as is;
    # XLA counts a loop's body once, so the looped steps' own counts fall
    # short and their `counted_step` must give the loop-free count.
    loop_free = _e2e_step_cost(False, 'none', counted=False).flops
    assert _e2e_step_cost(False, 'none', counted=True).flops == loop_free
    for sequential, remat in ((True, 'none'), (True, 'blocks'), (False, 'blocks')):
        looped = _e2e_step_cost(sequential, remat, counted=False).flops
        assert looped < 0.8 * loop_free, (sequential, remat, looped, loop_free)
        assert _e2e_step_cost(sequential, remat, counted=True).flops == loop_free


@pytest.mark.parametrize('value', [True, False])
def test_config_key_chooses_the_views_loop(value):
    # `optim.views_in_turn` reaches the step: only the looped step has a
    # separate loop-free twin for XLA's FLOP count.
    from configs import quickstart
    from lwfedssl_jax import builders, validation
    config = quickstart.get_config('mode=layerwise,smoke=True')
    config.optim.views_in_turn = value
    validation.check_config(config)
    setup = builders.build(config)
    fns = builders.build_stage(setup, setup.plan[-1], config, config.fl.num_clients, 32)
    assert (fns.local.counted_step is not fns.local.step) == value
