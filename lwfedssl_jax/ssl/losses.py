"""Pure SSL loss formulas (paper §2): no parameters, no state.

Inputs may be bfloat16 (`optim.compute_dtype`); every loss casts them to
float32 first, so the logits, the softmax and the loss are float32.
"""

import jax
import jax.numpy as jnp
import optax


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """Row-wise L2 normalisation of `[B, F]`."""
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, -1, keepdims=True), eps))


def _negative_logits(q_hat: jax.Array, negatives, temperature: float) -> jax.Array:
    """`[B, M]` logits of normalised queries against extra negatives; padding
    rows get -inf so they add nothing to the softmax denominator."""
    feats = jax.lax.stop_gradient(l2_normalize(negatives.features.astype(jnp.float32)))
    logits = q_hat @ feats.T / temperature
    return jnp.where(negatives.mask[None, :], logits, -jnp.inf)


def info_nce(q: jax.Array, k: jax.Array, temperature: float,
             negatives=None) -> jax.Array:
    """MoCo v3 contrastive loss with in-batch negatives (paper §2.1).

    ℓ(q, k, τ) = mean_i −log softmax_j(q̂_i·k̂_j / τ)[i]: the positive of query
    i is key i, the other B−1 keys of the batch are its negatives, plus the
    rows of `negatives` if given.

    Args:
      q: `[B, F]` queries (online branch), normalised here.
      k: `[B, F]` keys (target branch), normalised here; callers pass them
        under `stop_gradient`.
      temperature: τ.
      negatives: optional `ssl.base.Negatives` ([M, F] features, [M] mask).

    Returns:
      Scalar mean loss over the batch.
    """
    q_hat = l2_normalize(q.astype(jnp.float32))        # float32 logits and loss
    logits = q_hat @ l2_normalize(k.astype(jnp.float32)).T / temperature   # [B, B]
    if negatives is not None:
        logits = jnp.concatenate(
            [logits, _negative_logits(q_hat, negatives, temperature)], axis=1)
    labels = jnp.arange(q.shape[0])
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def byol_loss(p: jax.Array, z: jax.Array) -> jax.Array:
    """BYOL regression loss (Grill et al. 2020, eq. 2; paper §2.2).

    ℓ(p, z) = mean_i ‖p̂_i − ẑ_i‖² = mean_i 2 − 2·cos(p_i, z_i).

    Args:
      p: `[B, F]` online predictions, normalised here.
      z: `[B, F]` target projections, normalised here; callers pass them
        under `stop_gradient`.

    Returns:
      Scalar mean loss over the batch, in [0, 4].
    """
    p, z = p.astype(jnp.float32), z.astype(jnp.float32)   # float32 loss
    cos = jnp.sum(l2_normalize(p) * l2_normalize(z), axis=-1)   # [B]
    return jnp.mean(2.0 - 2.0 * cos)


def nt_xent(z1: jax.Array, z2: jax.Array, temperature: float,
            negatives=None) -> jax.Array:
    """SimCLR's NT-Xent over the 2B views (Chen et al. 2020; paper §2.3).

    With z = [z1; z2] (`[2B, F]`, normalised), s_ij = ẑ_i·ẑ_j / τ and
    pos(i) = (i + B) mod 2B:
    ℓ = mean_i −log( exp(s_i,pos(i)) / Σ_{j≠i} exp(s_ij) ), so each view has
    one positive (the other view of its image) and 2B − 2 in-batch
    negatives, plus the rows of `negatives` if given.

    Args:
      z1: `[B, F]` projections of the first views.
      z2: `[B, F]` projections of the second views.
      temperature: τ.
      negatives: optional `ssl.base.Negatives` ([M, F] features, [M] mask).

    Returns:
      Scalar mean loss over the 2B rows.
    """
    b = z1.shape[0]
    z_hat = l2_normalize(jnp.concatenate([z1, z2], axis=0).astype(jnp.float32))  # [2B, F]
    logits = z_hat @ z_hat.T / temperature                     # [2B, 2B]
    # A view's similarity to itself is always maximal and carries no signal:
    # -inf removes it from the softmax denominator entirely.
    logits = jnp.where(jnp.eye(2 * b, dtype=bool), -jnp.inf, logits)
    if negatives is not None:
        logits = jnp.concatenate(
            [logits, _negative_logits(z_hat, negatives, temperature)], axis=1)
    labels = (jnp.arange(2 * b) + b) % (2 * b)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
