"""BYOL / SimCLR losses and methods, negatives, momentum schedules, and a
contract test run over every registered SSL method."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lwfedssl_jax import ssl
from lwfedssl_jax.models import heads as heads_lib
from lwfedssl_jax.ssl import losses
from lwfedssl_jax.ssl.base import Negatives
from lwfedssl_jax.ssl.ema import make_momentum_fn


# ---------------------------------------------------------------- numpy refs

def _np_norm(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _np_log_softmax(logits):
    m = logits.max(1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(1, keepdims=True))


def np_nt_xent(z1, z2, t, extra=None):
    """Reference NT-Xent; `extra` `[M, F]` are (already unmasked) negatives."""
    b = z1.shape[0]
    z = _np_norm(np.concatenate([z1, z2]).astype(np.float64))
    logits = z @ z.T / t
    np.fill_diagonal(logits, -np.inf)
    if extra is not None:
        logits = np.concatenate([logits, z @ _np_norm(extra).T / t], axis=1)
    logp = _np_log_softmax(logits)
    pos = (np.arange(2 * b) + b) % (2 * b)
    return -np.mean(logp[np.arange(2 * b), pos])


def np_info_nce(q, k, t, extra=None):
    q, k = _np_norm(q.astype(np.float64)), _np_norm(k.astype(np.float64))
    logits = q @ k.T / t
    if extra is not None:
        logits = np.concatenate([logits, q @ _np_norm(extra).T / t], axis=1)
    return -np.mean(np.diag(_np_log_softmax(logits)[:, :q.shape[0]]))


def np_byol(p, z):
    return np.mean(2 - 2 * np.sum(_np_norm(p) * _np_norm(z), axis=1))


def _f32(x):
    return jnp.asarray(x, jnp.float32)


def _negatives(rng, m, f, n_pad):
    """`Negatives` with the last `n_pad` rows masked out (and set to large
    values, so that counting them by mistake would change the loss)."""
    feats = rng.normal(size=(m, f))
    feats[m - n_pad:] *= 50.0
    mask = np.arange(m) < m - n_pad
    return Negatives(_f32(feats), jnp.asarray(mask)), feats[:m - n_pad]


# ---------------------------------------------------------------- NT-Xent

def test_nt_xent_matches_numpy():
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    for t in (0.05, 0.1, 0.5, 1.0):
        np.testing.assert_allclose(losses.nt_xent(_f32(z1), _f32(z2), t),
                                   np_nt_xent(z1, z2, t), rtol=1e-5)


def test_nt_xent_hand_value_two_orthonormal_pairs():
    # z1 = z2 = I_2: each row sees its positive at 1/t and two negatives at 0
    # (its self-similarity is masked) -> loss log(1 + 2 e^{-1/t}).
    z = jnp.eye(2)
    np.testing.assert_allclose(losses.nt_xent(z, z, 0.5),
                               np.log(1 + 2 * np.exp(-2.0)), rtol=1e-6)


def test_nt_xent_self_similarity_never_counts():
    # Scaling rows does not change cosines. If the self-similarity (also 1/t)
    # leaked into the denominator the value would be log(2 + 2e^{-1/t}).
    z = jnp.eye(2)
    got = losses.nt_xent(3.0 * z, 0.5 * z, 0.5)
    np.testing.assert_allclose(got, np.log(1 + 2 * np.exp(-2.0)), rtol=1e-5)


def test_nt_xent_with_masked_negatives():
    rng = np.random.default_rng(1)
    z1, z2 = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    negs, kept = _negatives(rng, 7, 6, n_pad=3)
    for t in (0.1, 0.5):
        got = losses.nt_xent(_f32(z1), _f32(z2), t, negs)
        np.testing.assert_allclose(got, np_nt_xent(z1, z2, t, kept), rtol=1e-5)
        # Only the unmasked rows matter: an all-unmasked dictionary of the kept
        # rows gives the same value, and the extra negatives do change it.
        only_kept = Negatives(_f32(kept), jnp.ones(len(kept), bool))
        np.testing.assert_allclose(got, losses.nt_xent(_f32(z1), _f32(z2), t, only_kept),
                                   rtol=1e-5)
        assert abs(float(got) - np_nt_xent(z1, z2, t)) > 1e-3


def test_nt_xent_all_negatives_masked_equals_none():
    rng = np.random.default_rng(2)
    z1, z2 = _f32(rng.normal(size=(3, 4))), _f32(rng.normal(size=(3, 4)))
    negs = Negatives(_f32(rng.normal(size=(5, 4))), jnp.zeros(5, bool))
    np.testing.assert_allclose(losses.nt_xent(z1, z2, 0.2, negs),
                               losses.nt_xent(z1, z2, 0.2), rtol=1e-6)


def test_info_nce_with_masked_negatives():
    rng = np.random.default_rng(3)
    q, k = rng.normal(size=(5, 6)), rng.normal(size=(5, 6))
    negs, kept = _negatives(rng, 8, 6, n_pad=2)
    for t in (0.05, 0.2, 1.0):
        got = losses.info_nce(_f32(q), _f32(k), t, negs)
        np.testing.assert_allclose(got, np_info_nce(q, k, t, kept), rtol=1e-5)
        assert abs(float(got) - np_info_nce(q, k, t)) > 1e-4


def test_negatives_get_no_gradient():
    rng = np.random.default_rng(4)
    z1, z2 = _f32(rng.normal(size=(3, 4))), _f32(rng.normal(size=(3, 4)))
    feats = _f32(rng.normal(size=(5, 4)))
    mask = jnp.array([True, True, False, True, False])
    for loss in (lambda f: losses.nt_xent(z1, z2, 0.5, Negatives(f, mask)),
                 lambda f: losses.info_nce(z1, z2, 0.5, Negatives(f, mask))):
        g = jax.grad(loss)(feats)
        assert float(jnp.abs(g).max()) == 0


# ---------------------------------------------------------------- BYOL loss

def test_byol_loss_matches_numpy():
    rng = np.random.default_rng(5)
    p, z = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    np.testing.assert_allclose(losses.byol_loss(_f32(p), _f32(z)), np_byol(p, z),
                               rtol=1e-5)


def test_byol_loss_hand_values():
    x = _f32([[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]])
    np.testing.assert_allclose(losses.byol_loss(x, 4.0 * x), 0.0, atol=1e-6)
    np.testing.assert_allclose(losses.byol_loss(x, -2.0 * x), 4.0, rtol=1e-6)
    # Orthogonal pairs: cos = 0 -> 2.
    np.testing.assert_allclose(losses.byol_loss(jnp.eye(2), jnp.eye(2)[::-1]), 2.0,
                               rtol=1e-6)


# ---------------------------------------------------------------- methods

def _toy_setup(feature_dim=6, batch=8):
    encode = lambda p, h: h @ p['w']
    h1, h2 = jax.random.normal(jax.random.key(1), (2, batch, feature_dim))
    return encode, h1, h2


def test_byol_symmetric_loss_and_stop_gradient():
    method = ssl.get('byol')(proj_hidden=16, proj_dim=8, pred_hidden=16)
    heads = method.init_heads(jax.random.key(0), 6)
    online = {**heads, 'w': jnp.ones((6, 6)) + jnp.eye(6)}
    target = {'projector': jax.tree.map(lambda x: x * 1.1, heads['projector']),
              'w': jnp.eye(6)}
    encode, h1, h2 = _toy_setup()
    loss, metrics = method.loss_fn(online, target, encode, h1, h2)
    # Independent recomposition of the symmetric loss from its pieces.
    P = heads_lib.make_projector(16, 8)
    Q = heads_lib.make_predictor(16, 8)
    q = lambda h: np.asarray(Q.apply({'params': online['predictor']},
                             P.apply({'params': online['projector']}, encode(online, h))))
    k = lambda h: np.asarray(P.apply({'params': target['projector']}, encode(target, h)))
    expected = np_byol(q(h1), k(h2)) + np_byol(q(h2), k(h1))
    np.testing.assert_allclose(loss, expected, rtol=1e-4)
    np.testing.assert_allclose(metrics['loss'], loss)
    g = jax.grad(lambda t: method.loss_fn(online, t, encode, h1, h2)[0])(target)
    assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(g))


def test_byol_rejects_negatives_and_metadata():
    method = ssl.get('byol')(proj_hidden=8, proj_dim=4, pred_hidden=8)
    assert method.head_names == ('projector', 'predictor')
    assert method.target_head_names == ('projector',)
    assert method.has_target and method.samples_per_step == 1
    assert not method.supports_negatives
    np.testing.assert_allclose(method.momentum_fn(0.3), 0.99, rtol=1e-6)
    heads = method.init_heads(jax.random.key(0), 3)
    enc = lambda p, h: h
    h = jnp.ones((4, 3))
    negs = Negatives(jnp.ones((2, 4)), jnp.ones(2, bool))
    with pytest.raises(ValueError, match='negatives'):
        method.loss_fn(heads, heads, enc, h, h, negs)


def test_simclr_loss_recomposed_with_none_target():
    method = ssl.get('simclr')(temperature=0.2, proj_hidden=16, proj_dim=8)
    heads = method.init_heads(jax.random.key(0), 6)
    online = {**heads, 'w': jnp.ones((6, 6)) + jnp.eye(6)}
    encode, h1, h2 = _toy_setup()
    loss, metrics = method.loss_fn(online, None, encode, h1, h2)
    P = heads_lib.make_projector(16, 8)
    z = lambda h: np.asarray(P.apply({'params': online['projector']}, encode(online, h)))
    np.testing.assert_allclose(loss, np_nt_xent(z(h1), z(h2), 0.2), rtol=1e-4)
    np.testing.assert_allclose(metrics['loss'], loss)
    # With a dictionary: matches numpy with the unmasked rows appended.
    rng = np.random.default_rng(6)
    negs, kept = _negatives(rng, 5, 8, n_pad=2)
    loss_n, _ = method.loss_fn(online, None, encode, h1, h2, negs)
    np.testing.assert_allclose(loss_n, np_nt_xent(z(h1), z(h2), 0.2, kept), rtol=1e-4)


def test_simclr_metadata_and_bad_temperature():
    method = ssl.get('simclr')()
    assert method.head_names == ('projector',)
    assert method.target_head_names == () and method.momentum_fn is None
    assert not method.has_target
    assert method.samples_per_step == 2 and method.supports_negatives
    for bad in (0.0, -0.5):
        with pytest.raises(ValueError, match='ssl.kwargs.temperature'):
            ssl.get('simclr')(temperature=bad)


def test_registry_has_all_paper_methods():
    assert {'mocov3', 'byol', 'simclr'} <= set(ssl.METHODS)
    for name in ssl.METHODS:
        assert ssl.get(name)().name == name


# ---------------------------------------------------------------- momentum

def test_momentum_schedules():
    const = make_momentum_fn(0.99, 'constant')
    for p in (0.0, 0.5, 1.0):
        np.testing.assert_allclose(const(p), 0.99, rtol=1e-6)
    base = 0.9
    cos = make_momentum_fn(base, 'cosine')
    np.testing.assert_allclose(cos(0.0), base, rtol=1e-6)
    np.testing.assert_allclose(cos(0.5), (1 + base) / 2, rtol=1e-6)
    np.testing.assert_allclose(cos(1.0), 1.0, rtol=1e-6)
    # Traceable: progress arrives as a traced scalar inside the client step.
    np.testing.assert_allclose(jax.jit(cos)(jnp.float32(0.5)), (1 + base) / 2,
                               rtol=1e-6)


def test_momentum_bad_arguments():
    with pytest.raises(ValueError, match='momentum_schedule'):
        make_momentum_fn(0.99, 'linear')
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match='momentum'):
            make_momentum_fn(bad)
    with pytest.raises(ValueError, match='momentum_schedule'):
        ssl.get('byol')(momentum_schedule='step')


# ---------------------------------------------------------------- contract

def _small_kwargs(make):
    params = inspect.signature(make).parameters
    small = dict(proj_hidden=16, proj_dim=8, pred_hidden=16)
    return {k: v for k, v in small.items() if k in params}


@pytest.mark.parametrize('name', sorted(ssl.METHODS))
def test_method_contract(name):
    make = ssl.get(name)
    method = make(**_small_kwargs(make))
    assert method.name == name
    d, b, proj_dim = 6, 8, 8
    heads = method.init_heads(jax.random.key(0), d)
    assert set(heads) == set(method.head_names)
    assert set(method.target_head_names) <= set(method.head_names)
    assert method.has_target == bool(method.target_head_names)
    online = {**heads, 'w': jnp.eye(d) + 0.1}
    target = None
    if method.has_target:
        # A target that differs from online, so a leaked gradient would show.
        target = {**{k: jax.tree.map(lambda x: 0.9 * x, heads[k])
                     for k in method.target_head_names}, 'w': jnp.eye(d)}
    encode, h1, h2 = _toy_setup(d, b)

    def loss(on, tg, negs=None):
        return method.loss_fn(on, tg, encode, h1, h2, negs)[0]

    value, grads = jax.jit(jax.value_and_grad(loss))(online, target)
    assert value.shape == () and np.isfinite(float(value))
    for leaf in jax.tree.leaves(grads):
        assert np.all(np.isfinite(np.asarray(leaf)))
    for head in (*method.head_names, 'w'):
        assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(grads[head])) > 0, head

    if method.has_target:
        g_t = jax.grad(loss, argnums=1)(online, target)
        assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(g_t))
        mu = method.momentum_fn(jnp.float32(0.5))
        assert mu.shape == () and 0.0 <= float(mu) <= 1.0

    z = method.project_fn(online, encode, h1)
    assert z.shape == (b, proj_dim)

    rng = np.random.default_rng(0)
    negs, _ = _negatives(rng, 5, proj_dim, n_pad=2)
    if method.supports_negatives:
        value_n, grads_n = jax.value_and_grad(loss)(online, target, negs)
        assert np.isfinite(float(value_n))
        assert abs(float(value_n) - float(value)) > 1e-6  # negatives are used
        for leaf in jax.tree.leaves(grads_n):
            assert np.all(np.isfinite(np.asarray(leaf)))
    else:
        with pytest.raises(ValueError):
            loss(online, target, negs)
