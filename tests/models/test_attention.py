"""`models/attention.py`: the heads-first attention against a numpy forward
and against `jax.nn.dot_product_attention` (values and gradients)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lwfedssl_jax.models import attention as attention_lib

B, T, N, H = 3, 5, 2, 4


def _qkv(dtype=jnp.float32):
    return jax.random.normal(jax.random.key(0), (B, T, 3, N, H)).astype(dtype)


def test_forward_matches_numpy():
    qkv = np.asarray(_qkv(), np.float64)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]                 # [B, T, N, H]
    expected = np.zeros((B, T, N, H))
    for b in range(B):
        for n in range(N):
            logits = q[b, :, n] @ k[b, :, n].T / np.sqrt(H)             # [T, T]
            p = np.exp(logits - logits.max(-1, keepdims=True))
            expected[b, :, n] = (p / p.sum(-1, keepdims=True)) @ v[b, :, n]
    got = attention_lib.attention_heads_first(_qkv())
    assert got.shape == (B, T, N * H)
    np.testing.assert_allclose(got, expected.reshape(B, T, N * H), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('dtype, tol', [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_matches_dot_product_attention_values_and_gradients(dtype, tol):
    qkv = _qkv(dtype)
    g = jax.random.normal(jax.random.key(1), (B, T, N * H)).astype(dtype)

    def reference(x):
        return jax.nn.dot_product_attention(x[:, :, 0], x[:, :, 1], x[:, :, 2]).reshape(
            B, T, N * H)

    def loss(fn):
        return lambda x: jnp.sum((fn(x) * g).astype(jnp.float32))

    ours, ref = attention_lib.attention_heads_first(qkv), reference(qkv)
    assert ours.dtype == ref.dtype == dtype
    np.testing.assert_allclose(np.float32(ours), np.float32(ref), rtol=tol, atol=tol)
    grad_ours = jax.grad(loss(attention_lib.attention_heads_first))(qkv)
    grad_ref = jax.grad(loss(reference))(qkv)
    np.testing.assert_allclose(np.float32(grad_ours), np.float32(grad_ref), rtol=tol,
                               atol=tol)


def test_dispatch_on_this_backend_equals_the_heads_first_form():
    qkv = _qkv()
    expected = (attention_lib.attention_heads_first(qkv) if jax.default_backend() == 'cpu'
                else jax.nn.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1],
                                                  qkv[:, :, 2]).reshape(B, T, N * H))
    np.testing.assert_array_equal(attention_lib.attention(qkv), expected)
