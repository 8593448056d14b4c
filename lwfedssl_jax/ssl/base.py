"""The SSL method contract shared by MoCo v3 (and later BYOL, SimCLR)."""

from typing import Callable, NamedTuple

import jax

# encode_fn(params, h) -> [B, D]: runs the *trainable* encoder segment on the
# frozen-prefix output `h` (tokens, or images when nothing is frozen) and
# pools the top block's class token. Provided by the client engine.
EncodeFn = Callable[[dict, jax.Array], jax.Array]


class SSLMethod(NamedTuple):
    """A self-supervised method as a bundle of pure functions.

    Attributes:
      name: registry name.
      head_names: top-level parameter keys of the heads (trained, exchanged).
      target_head_names: heads that the momentum target keeps an EMA copy of
        (empty tuple and `momentum=None` for methods without a target).
      momentum: EMA coefficient µ of the target branch, or None.
      init_heads: `(key, feature_dim) -> {head_name: params}`.
      samples_per_step: samples one step costs in the paper's GFLOPs
        convention (§7.1): 1 for MoCo v3 / BYOL, 2 for SimCLR.
      loss_fn: `(online, target, encode_fn, h1, h2) -> (loss, metrics)`, where
        `online` holds the trainable encoder parts and all heads, `target` the
        EMA copy (or None), and `h1`, `h2` are the frozen-prefix outputs of
        the two views `[B, ...]`. Differentiated with respect to `online`.
    """
    name: str
    head_names: tuple[str, ...]
    target_head_names: tuple[str, ...]
    momentum: float | None
    init_heads: Callable[[jax.Array, int], dict]
    loss_fn: Callable
    samples_per_step: int = 1
