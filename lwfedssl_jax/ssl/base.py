"""The SSL method contract shared by MoCo v3, BYOL and SimCLR (paper §2).

A method is a bundle of pure functions over parameter dicts. The client
engine (`federated/client.py`) owns everything around it: the frozen
prefix, augmentation, the optimiser, the target branch's EMA. A method only
says which heads it has, how its loss is computed from the two views, which
heads its momentum target copies, and how its momentum evolves.
"""

from typing import Callable, NamedTuple

import jax

from lwfedssl_jax.errors import ConfigError
from lwfedssl_jax.models import heads

# encode_fn(params, h) -> [B, D]: runs the *trainable* encoder segment on the
# frozen-prefix output `h` (tokens, or images when nothing is frozen) and
# pools the top block's class token. Provided by the client engine.
EncodeFn = Callable[[dict, jax.Array], jax.Array]


class Negatives(NamedTuple):
    """Extra negatives from outside the batch (FedCA's global dictionary).

    Attributes:
      features: `[M, F]` representations in the projector's output space
        (normalised by the loss); treated as constants (no gradient).
      mask: `[M]` bool, False for padding rows that must not count.
    """
    features: jax.Array
    mask: jax.Array


class SSLMethod(NamedTuple):
    """A self-supervised method as a bundle of pure functions.

    Attributes:
      name: registry name.
      head_names: top-level parameter keys of the heads (trained, exchanged);
        the first is the projector, whose output `project_fn` returns.
      target_head_names: heads that the momentum target keeps an EMA copy of
        (empty for methods without a target branch).
      momentum_fn: `progress in [0, 1] -> µ`, the EMA coefficient of the
        target branch as a function of training progress (see `ssl/ema.py`),
        or None for methods without a target branch (SimCLR).
      init_heads: `(key, feature_dim) -> {head_name: params}`.
      loss_fn: `(online, target, encode_fn, h1, h2, negatives) -> (loss,
        metrics)`, where `online` holds the trainable encoder parts and all
        heads, `target` the EMA copy (or None), `h1`, `h2` the frozen-prefix
        outputs of the two views `[B, ...]`, and `negatives` a `Negatives`
        or None. Differentiated with respect to `online`. Methods with
        `supports_negatives=False` must be given `negatives=None`.
      project_fn: `(params, encode_fn, h) -> [B, F]`, the representation in
        the projector's output space (what FedCA's dictionary holds and
        what alignment terms compare).
      samples_per_step: samples one step costs in the paper's GFLOPs
        convention (§7.1): 1 for MoCo v3 / BYOL, 2 for SimCLR.
      supports_negatives: whether `loss_fn` uses extra negatives
        (contrastive methods); algorithms that send them require it.
      key_fn, view_loss_fn: the loss split per view, for methods whose loss
        is a sum over the views of a term that involves the online branch
        of ONE view only (MoCo v3, BYOL; None for SimCLR, whose NT-Xent
        couples both online views). `key_fn(target, encode_fn, h) -> k` is
        the target branch of a view (the engine stops its gradient) and
        `view_loss_fn(online, encode_fn, h, k_other, negatives) -> loss` a
        view's term against the other view's key, so that
        `loss_fn(online, target, encode_fn, h1, h2, negatives)[0] ==
        view_loss_fn(online, encode_fn, h1, k2, negatives) +
        view_loss_fn(online, encode_fn, h2, k1, negatives)`. The client step
        then differentiates one view after the other, so only one view's
        activations are alive at a time (`federated/client.py`).
    """
    name: str
    head_names: tuple[str, ...]
    target_head_names: tuple[str, ...]
    momentum_fn: Callable[[jax.Array], jax.Array] | None
    init_heads: Callable[[jax.Array, int], dict]
    loss_fn: Callable
    project_fn: Callable
    samples_per_step: int = 1
    supports_negatives: bool = False
    key_fn: Callable | None = None
    view_loss_fn: Callable | None = None

    @property
    def has_target(self) -> bool:
        """Whether the method keeps a momentum (EMA) target branch."""
        return self.momentum_fn is not None

    @property
    def splits_views(self) -> bool:
        """Whether the loss is given per view (`key_fn`, `view_loss_fn`)."""
        return self.key_fn is not None and self.view_loss_fn is not None


PROJECTOR = 'projector'
PREDICTOR = 'predictor'


class OnlineHeads(NamedTuple):
    """Projector H + predictor P of the target-based methods (MoCo v3, BYOL).

    Attributes:
      init_heads: `(key, feature_dim) -> {'projector': ..., 'predictor': ...}`.
      project_fn: `(params, encode_fn, h) -> [B, proj_dim]`, H(F(h)).
      query_fn: `(params, encode_fn, h) -> [B, proj_dim]`, P(H(F(h))).
    """
    init_heads: Callable
    project_fn: Callable
    query_fn: Callable


def check_head_sizes(**sizes: int) -> None:
    """Refuses head widths and depths that are not ints >= 1 (keys are the
    method's `ssl.kwargs`)."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f'ssl.kwargs.{name}', value, 'must be an int >= 1.')


def make_online_heads(*, proj_hidden: int, proj_dim: int, proj_layers: int,
                      pred_hidden: int, pred_layers: int,
                      pred_last_bn: bool = False,
                      pred_last_bias: bool = True) -> OnlineHeads:
    """The MoCo v3 / BYOL heads (models/heads.py) as pure functions;
    `pred_last_bn` ends the predictor in a BN without affine (MoCo v3 ViT),
    `pred_last_bias=False` drops its last bias (MoCo v3's bias-free MLPs)."""
    check_head_sizes(proj_hidden=proj_hidden, proj_dim=proj_dim, proj_layers=proj_layers,
                     pred_hidden=pred_hidden, pred_layers=pred_layers)
    if not isinstance(pred_last_bn, bool):
        raise ConfigError('ssl.kwargs.pred_last_bn', pred_last_bn, 'must be a bool.')
    projector = heads.make_projector(proj_hidden, proj_dim, proj_layers)
    predictor = heads.make_predictor(pred_hidden, proj_dim, pred_layers,
                                     last_batch_norm=pred_last_bn,
                                     last_bias=pred_last_bias)

    def init_heads(key, feature_dim):
        kp, kq = jax.random.split(key)
        return {PROJECTOR: projector.init(kp, jax.numpy.zeros((2, feature_dim)))['params'],
                PREDICTOR: predictor.init(kq, jax.numpy.zeros((2, proj_dim)))['params']}

    def project_fn(params, encode_fn, h):
        return projector.apply({'params': params[PROJECTOR]}, encode_fn(params, h))

    def query_fn(params, encode_fn, h):
        return predictor.apply({'params': params[PREDICTOR]},
                               project_fn(params, encode_fn, h))

    return OnlineHeads(init_heads, project_fn, query_fn)
