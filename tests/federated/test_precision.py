"""Mixed precision of the client step (`optim.compute_dtype`, federated/client.py).

For every registered SSL method and backbone: a few bfloat16 local steps from
the same weights and batches track the float32 ones, the state (parameters,
optimiser, EMA target) stays float32, and the bfloat16 step really runs its
matmuls in bfloat16. The validator refuses an unknown dtype in one message.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common, quickstart
from lwfedssl_jax import models, ssl, validation
from lwfedssl_jax.data.augment import AugmentConfig
from lwfedssl_jax.errors import ConfigErrors
from lwfedssl_jax.federated import client as client_lib
from lwfedssl_jax.federated.algorithms.base import StepContext
from lwfedssl_jax.stages import make_stage_plan
from lwfedssl_jax.utils.tree import select

STEPS = 3
BATCH = 16
# bfloat16 keeps 8 significant bits (relative rounding 2^-9 = 0.2%); through
# a few blocks, the heads and three optimiser steps the losses stayed within
# 1.2% of float32 in every case (measured 0.02-1.2%, largest: ResNet-18 MoCo
# v3). 3% leaves room for other seeds; that the bfloat16 step did not just
# run in float32 is checked on its compiled HLO below.
LOSS_RTOL = 3e-2
SMALL_HEADS = dict(proj_hidden=32, proj_dim=16, pred_hidden=32)


def tiny_encoder(name):
    entry = models.MODELS[name]
    return models.make_backbone({'name': name, **entry.defaults, **entry.tiny})


def method_for(name):
    kwargs = {k: v for k, v in SMALL_HEADS.items() if k in common.SSL_DEFAULTS[name]}
    return ssl.get(name)(**kwargs)


def float_dtypes(tree):
    return {str(x.dtype) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)}


def run_steps(encoder, method, spec, params, compute_dtype):
    """(losses [STEPS], trainable, target, opt_state, compiled HLO text)."""
    tx = client_lib.make_client_optimizer(spec, learning_rate=1e-3, weight_decay=1e-4,
                                          b1=0.9, b2=0.999)
    local = client_lib.make_local_step(encoder, method, spec, tx, AugmentConfig(),
                                       compute_dtype=compute_dtype)
    frozen, trainable = select(params, spec.frozen), select(params, spec.trainable)
    target, opt = local.init_target(trainable), local.init_opt(frozen, trainable)
    size = encoder.config_dict()['image_size']
    losses, step = [], None
    for k in range(STEPS):
        images = jax.random.randint(jax.random.key(100 + k), (BATCH, size, size, 3), 0,
                                    256).astype(jnp.uint8)
        args = (frozen, trainable, target, opt, images, jax.random.key(k),
                select(params, spec.exchanged), StepContext(), jnp.float32(0.99))
        if step is None:   # compiled once, ahead of time, to read its HLO
            step = jax.jit(local.step).lower(*args).compile()
            hlo = step.as_text()
        trainable, target, opt, loss = step(*args)
        losses.append(float(loss))
    return np.array(losses), trainable, target, opt, hlo


@pytest.mark.parametrize('model', sorted(models.MODELS))
@pytest.mark.parametrize('method_name', sorted(ssl.METHODS))
def test_bfloat16_steps_track_float32_and_keep_float32_state(model, method_name):
    encoder, method = tiny_encoder(model), method_for(method_name)
    # The second layer-wise stage: a frozen prefix (run in the compute dtype)
    # under a trained block and the heads.
    spec = make_stage_plan('layerwise', backbone=encoder, blocks_per_stage=1,
                           total_rounds=encoder.depth, head_names=method.head_names)[1]
    params = {**encoder.init(jax.random.key(0)),
              **method.init_heads(jax.random.key(1), encoder.head_width)}
    params = {**params, **{a: encoder.init_part(jax.random.key(2), a)
                           for a in encoder.adapter_parts(spec.num_blocks)}}
    params = select(params, spec.present)
    ref, *_, ref_hlo = run_steps(encoder, method, spec, params, 'float32')
    got, trainable, target, opt, hlo = run_steps(encoder, method, spec, params, 'bfloat16')

    np.testing.assert_allclose(got, ref, rtol=LOSS_RTOL)
    assert not np.array_equal(got, ref)          # bfloat16 did change the rounding
    # The matmuls ran in bfloat16 (and none did in the float32 step).
    assert 'bf16' in hlo and 'bf16' not in ref_hlo
    assert float_dtypes(trainable) == {'float32'}
    assert float_dtypes(opt) <= {'float32'}
    if method.has_target:
        assert float_dtypes(target) == {'float32'}
    # The step trained: the trained parts moved away from the start.
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()),
                         trainable, select(params, spec.trainable))
    assert max(jax.tree.leaves(moved)) > 0


def test_float32_compute_dtype_is_the_plain_engine():
    """'float32' adds no casts: the step is bitwise the default step."""
    encoder, method = tiny_encoder('vit'), method_for('mocov3')
    spec = make_stage_plan('e2e', backbone=encoder, blocks_per_stage=1, total_rounds=1,
                           head_names=method.head_names)[0]
    params = {**encoder.init(jax.random.key(0)),
              **method.init_heads(jax.random.key(1), encoder.head_width)}
    tx = client_lib.make_client_optimizer(spec, learning_rate=1e-3, weight_decay=0.0,
                                          b1=0.9, b2=0.999)
    outs = []
    for kwargs in ({}, {'compute_dtype': 'float32'}):
        local = client_lib.make_local_step(encoder, method, spec, tx, AugmentConfig(),
                                           **kwargs)
        tr = select(params, spec.trainable)
        images = jax.random.randint(jax.random.key(3), (BATCH, 8, 8, 3), 0, 256).astype(jnp.uint8)
        outs.append(jax.jit(local.step)({}, tr, local.init_target(tr), local.init_opt({}, tr),
                                        images, jax.random.key(4), tr, StepContext(),
                                        jnp.float32(0.99)))
    jax.tree.map(np.testing.assert_array_equal, outs[0], outs[1])


@pytest.mark.parametrize('key,value', [('optim.compute_dtype', 'float16'),
                                       ('optim.remat', 'everything')])
def test_validator_refuses_an_unknown_dtype_or_remat_policy(key, value):
    config = quickstart.get_config()
    config.unlock()
    group, leaf = key.split('.')
    config[group][leaf] = value
    with pytest.raises(ConfigErrors) as info:
        validation.check_config(config)
    assert len(info.value.errors) == 1
    message = str(info.value)
    allowed = (client_lib.COMPUTE_DTYPES if leaf == 'compute_dtype'
               else models.backbone.REMAT_POLICIES)
    assert f'{key}={value!r}' in message
    assert all(repr(c) in message for c in allowed)
