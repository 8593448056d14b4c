"""Softmax attention of the ViT's blocks, laid out for XLA:CPU.

`attention(qkv)`: `[B, T, 3, N, H]` (queries, keys and values of N heads of
width H, as one fused matmul produces them) -> `[B, T, N * H]`. The numbers
are `jax.nn.dot_product_attention`'s: logits in float32 (at least), scaled
by 1/sqrt(H) after the product, softmax in float32, probabilities cast back
to the values' dtype.

Why not call `jax.nn.dot_product_attention` on CPU: it multiplies in the
`[B, T, N, H]` layout, and XLA:CPU differentiates that into batched
products whose batch dimensions (B, N) are not the leading ones. Moving the
heads next to the batch once (`[B, N, T, H]`) makes every product of the
forward and backward passes a plain batched matmul. Measured on the 2-core
development machine (ViT-Tiny shapes: T = 65, N = 3, H = 64; value and
gradient of q, k, v, interleaved, median of 30): 15.9 -> 10.7 ms at B = 64,
44.6 -> 24.1 ms at B = 128. In the whole client step (batch 64, interleaved):
the last layer-wise stage 479 -> 444 ms, e2e 1636 -> 1616 ms (within noise;
experiments/benchmarks/README.md). Accelerators keep
`jax.nn.dot_product_attention`, which may pick a fused kernel there.
"""

import jax
import jax.numpy as jnp


def attention_heads_first(qkv: jax.Array) -> jax.Array:
    """`[B, T, 3, N, H]` -> `[B, T, N * H]`, every product on `[B, N, ...]`."""
    b, t, _, n, h = qkv.shape
    q, k, v = jnp.transpose(qkv, (2, 0, 3, 1, 4))   # one transpose: each [B, N, T, H]
    logits_dtype = jnp.promote_types(q.dtype, jnp.float32)
    logits = jnp.einsum('bnth,bnsh->bnts', q, k, preferred_element_type=logits_dtype)
    logits = logits * jnp.asarray(h ** -0.5, logits.dtype)
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    o = jnp.einsum('bnts,bnsh->bnth', probs, v)                          # [B, N, T, H]
    return jnp.transpose(o, (0, 2, 1, 3)).reshape(b, t, n * h)


def attention(qkv: jax.Array) -> jax.Array:
    """Softmax attention: `[B, T, 3, N, H]` -> `[B, T, N * H]` (module docstring)."""
    if jax.default_backend() == 'cpu':
        return attention_heads_first(qkv)
    b, t, _, n, h = qkv.shape
    o = jax.nn.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])
    return o.reshape(b, t, n * h)
