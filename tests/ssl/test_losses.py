import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lwfedssl_jax.models import heads as heads_lib
from lwfedssl_jax.ssl import get, losses
from lwfedssl_jax.ssl.ema import ema_update


def np_info_nce(q, k, t):
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    k = k / np.linalg.norm(k, axis=1, keepdims=True)
    logits = q @ k.T / t
    logits = logits - logits.max(1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return -np.mean(np.diag(logp))


def test_info_nce_matches_numpy():
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    for t in (0.05, 0.2, 1.0):
        got = losses.info_nce(jnp.asarray(q, jnp.float32), jnp.asarray(k, jnp.float32), t)
        np.testing.assert_allclose(got, np_info_nce(q, k, t), rtol=1e-5)


def test_info_nce_hand_value_two_orthogonal_pairs():
    # q_i = k_i orthonormal: logits diag 1/t, off-diag 0 -> loss log(1 + e^{-1/t}).
    q = jnp.eye(2)
    np.testing.assert_allclose(losses.info_nce(q, q, 0.5),
                               np.log(1 + np.exp(-2.0)), rtol=1e-6)


def test_mocov3_symmetric_loss_and_stop_gradient():
    method = get('mocov3')(temperature=0.1, proj_hidden=16, proj_dim=8, pred_hidden=16)
    heads = method.init_heads(jax.random.key(0), 6)
    online = {**heads, 'w': jnp.ones((6, 6))}
    target = {'projector': jax.tree.map(lambda x: x * 1.1, heads['projector']),
              'w': jnp.eye(6)}
    encode = lambda p, h: h @ p['w']
    h1, h2 = jax.random.normal(jax.random.key(1), (2, 8, 6))
    loss, _ = method.loss_fn(online, target, encode, h1, h2)
    # Independent recomposition of the symmetric loss from its pieces.
    P = heads_lib.make_projector(16, 8)
    Q = heads_lib.make_predictor(16, 8, last_batch_norm=True)   # MoCo v3's ViT predictor
    q = lambda h: Q.apply({'params': online['predictor']},
                          P.apply({'params': online['projector']}, encode(online, h)))
    k = lambda h: P.apply({'params': target['projector']}, encode(target, h))
    expected = (np_info_nce(np.asarray(q(h1)), np.asarray(k(h2)), 0.1)
                + np_info_nce(np.asarray(q(h2)), np.asarray(k(h1)), 0.1))
    np.testing.assert_allclose(loss, expected, rtol=1e-4)
    # No gradient flows into the target branch.
    g = jax.grad(lambda t: method.loss_fn(online, t, encode, h1, h2)[0])(target)
    assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(g))



def test_loss_scale_2tau():
    kw = dict(temperature=0.2, proj_hidden=8, proj_dim=4, pred_hidden=8)
    m1, m2 = get('mocov3')(**kw), get('mocov3')(**kw, loss_scale_2tau=True)
    heads = m1.init_heads(jax.random.key(0), 3)
    h1, h2 = jax.random.normal(jax.random.key(1), (2, 5, 3))
    enc = lambda p, h: h
    l1, _ = m1.loss_fn(heads, heads, enc, h1, h2)
    l2, _ = m2.loss_fn(heads, heads, enc, h1, h2)
    np.testing.assert_allclose(l2, 0.4 * l1, rtol=1e-6)


def test_ema_update_reads_only_target_keys():
    target = {'a': jnp.array([1.0, 2.0])}
    online = {'a': jnp.array([3.0, 6.0]), 'predictor': jnp.array([9.0])}
    out = ema_update(target, online, 0.75)
    np.testing.assert_allclose(out['a'], [1.5, 3.0])
    assert set(out) == {'a'}


def test_unknown_method_and_bad_hparams():
    with pytest.raises(ValueError, match=r"ssl.name='dino': unknown; choices"):
        get('dino')
    with pytest.raises(ValueError, match='temperature'):
        get('mocov3')(temperature=0.0)
