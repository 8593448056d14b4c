"""Pure SSL loss formulas (paper §2): no parameters, no state."""

import jax
import jax.numpy as jnp
import optax


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """Row-wise L2 normalisation of `[B, F]`."""
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, -1, keepdims=True), eps))


def info_nce(q: jax.Array, k: jax.Array, temperature: float) -> jax.Array:
    """MoCo v3 contrastive loss with in-batch negatives (paper §2.1).

    ℓ(q, k, τ) = mean_i −log softmax_j(q̂_i·k̂_j / τ)[i]: the positive of query
    i is key i, the other B−1 keys of the batch are its negatives.

    Args:
      q: `[B, F]` queries (online branch), normalised here.
      k: `[B, F]` keys (target branch), normalised here; callers pass them
        under `stop_gradient`.
      temperature: τ.

    Returns:
      Scalar mean loss over the batch.
    """
    logits = l2_normalize(q) @ l2_normalize(k).T / temperature   # [B, B]
    labels = jnp.arange(q.shape[0])
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
