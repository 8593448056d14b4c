"""The MoCo v3 heads as its reference `_build_mlp` builds them."""

import jax
import jax.numpy as jnp
import numpy as np

from lwfedssl_jax import ssl
from lwfedssl_jax.models import heads as heads_lib


def _shapes(tree):
    return jax.tree.map(lambda x: x.shape, tree)


def test_mocov3_vit_heads_are_bias_free_and_end_in_batch_norm_without_affine():
    method = ssl.get('mocov3')(proj_hidden=16, proj_dim=8, pred_hidden=12)
    heads = method.init_heads(jax.random.key(0), 6)
    # Linear(no bias) + BN(affine) + ReLU for hidden layers; the last Linear
    # has no bias and its BN no parameters (MoCo v3: last_bn=True, affine=False).
    assert _shapes(heads['projector']) == {
        'fc_0': {'kernel': (6, 16)}, 'bn_0': {'scale': (16,), 'bias': (16,)},
        'fc_1': {'kernel': (16, 16)}, 'bn_1': {'scale': (16,), 'bias': (16,)},
        'fc_2': {'kernel': (16, 8)}}
    assert _shapes(heads['predictor']) == {
        'fc_0': {'kernel': (8, 12)}, 'bn_0': {'scale': (12,), 'bias': (12,)},
        'fc_1': {'kernel': (12, 8)}}
    # The predictor's output is batch-normalised: zero mean, unit variance.
    x = jax.random.normal(jax.random.key(1), (32, 6)) * 3 + 1
    query = method.project_fn(heads, lambda p, h: h, x)   # projector output [32, 8]
    np.testing.assert_allclose(jnp.mean(query, 0), 0, atol=1e-5)
    pred = heads_lib.make_predictor(12, 8, last_batch_norm=True).apply(
        {'params': heads['predictor']}, query)
    np.testing.assert_allclose(np.asarray(pred).mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(pred).var(0), 1, rtol=1e-3)


def test_resnet_style_predictor_ends_in_a_bias_free_linear():
    method = ssl.get('mocov3')(proj_hidden=16, proj_dim=8, pred_hidden=12,
                               pred_last_bn=False)
    heads = method.init_heads(jax.random.key(0), 6)
    assert _shapes(heads['predictor'])['fc_1'] == {'kernel': (12, 8)}
    # BYOL's reference predictor ends in a Linear with bias.
    byol = ssl.get('byol')(proj_hidden=16, proj_dim=8, pred_hidden=12)
    assert _shapes(byol.init_heads(jax.random.key(0), 6)['predictor'])['fc_1'] == {
        'kernel': (12, 8), 'bias': (8,)}
