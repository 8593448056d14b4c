"""The client step's gradient, one view at a time (issue 12: peak memory).

Differentiated as one function, a two-view loss keeps the activations of
BOTH views' online branches alive until the backward pass, and XLA:CPU
interleaves the two forwards and backwards (ViT-Tiny last layer-wise stage,
batch 64: 178 MiB of temporaries; e2e: 1,941 MiB). MoCo v3's and BYOL's
losses are sums of one term per view, each involving the online branch of
that view only and the other view's gradient-free target key
(`SSLMethod.key_fn`, `SSLMethod.view_loss_fn`). So their gradient is the
sum of two independent gradients, and `views_in_turn` computes them in
turn: a loop over the views for the target keys, then a loop over the
views for the online branch's forward and backward. Only one view's
activations are alive at a time (ViT-Tiny: 106 MiB of temporaries for the
last layer-wise stage, 1,041 MiB e2e); the FLOPs are the same (nothing is
recomputed).

Same numbers as differentiating `loss_fn` up to float round-off: each
parameter's gradient is the same two per-view contributions added (in
`jax.grad`'s joint backward, the same addition of the two cotangents, and
floating-point addition of two terms commutes), and the algorithm's extra
loss terms, if any, are differentiated in a third pass and added.
"""

from typing import Callable

import jax
import jax.numpy as jnp

from lwfedssl_jax.ssl.base import SSLMethod


def views_in_turn(method: SSLMethod, trainable: dict, target, encode: Callable,
                  views: jax.Array, negatives, cast: Callable,
                  terms: Callable | None = None):
    """`(loss, grads)` of the client step's loss w.r.t. `trainable`, view by view.

    Args:
      method: an SSL method with `splits_views`.
      trainable: the differentiated parameters (float32).
      target: the target branch's parameters, already in the compute dtype.
      encode: the trainable segment (`EncodeFn`).
      views: `[2, B, ...]`, the frozen prefix's outputs of the two views.
      negatives: `Negatives` or None (passed to `view_loss_fn`).
      cast: parameters -> compute dtype (identity in float32).
      terms: `online -> (loss, metrics)`, the algorithm's extra terms, or
        None; differentiated after the views.

    Returns:
      The float32 scalar loss (the views' terms plus `terms`) and the
      gradient, a pytree like `trainable`.
    """
    # Loops (`lax.scan`) rather than two unrolled calls: XLA runs a loop's
    # iterations one after the other, while it interleaved unrolled views
    # (it drops `optimization_barrier`s before scheduling). The parameters
    # ride in the carry: as loop invariants, XLA hoisted their broadcasts
    # (biases to [B * T, 4D], ...) out of the loop, alive throughout
    # (42 MiB at ViT-Tiny batch 64).
    def one_key(target, h):
        return target, jax.lax.stop_gradient(method.key_fn(target, encode, h))

    _, keys = jax.lax.scan(one_key, target, views)

    def view_loss(online, h, key):
        # Differentiated in float32: the cast's transpose brings the
        # compute-dtype gradients back to float32.
        loss = method.view_loss_fn(cast(online), encode, h, key, negatives)
        return loss.astype(jnp.float32)

    def one_view(carry, view):
        online, loss, grads = carry
        view_loss_value, view_grads = jax.value_and_grad(view_loss)(online, *view)
        return (online, loss + view_loss_value,
                jax.tree.map(jnp.add, grads, view_grads)), None

    # Each view against the OTHER view's key. From zeros, the sums are
    # exactly l1 + l2 and g1 + g2.
    zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, trainable))
    (_, loss, grads), _ = jax.lax.scan(one_view, (trainable, *zeros), (views, keys[::-1]))
    if terms is not None:
        (term_loss, _), term_grads = jax.value_and_grad(terms, has_aux=True)(trainable)
        loss, grads = loss + term_loss, jax.tree.map(jnp.add, grads, term_grads)
    return loss, grads
