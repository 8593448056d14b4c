"""MoCo v3 (paper §2.1): symmetric InfoNCE between an online branch
(encoder -> projector H -> predictor P) and a momentum target branch
(EMA encoder -> EMA projector), both fed the two augmented views.
"""

import jax

from lwfedssl_jax.errors import ConfigError
from lwfedssl_jax.ssl import ema, losses
from lwfedssl_jax.ssl.base import PREDICTOR, PROJECTOR, SSLMethod, make_online_heads


def make(*, temperature: float = 0.05, momentum: float = 0.99,
         momentum_schedule: str = 'constant',
         proj_hidden: int = 512, proj_dim: int = 256, proj_layers: int = 3,
         pred_hidden: int = 512, pred_layers: int = 2, pred_last_bn: bool = True,
         loss_scale_2tau: bool = False) -> SSLMethod:
    """Builds MoCo v3.

    Args:
      temperature: τ of InfoNCE (paper: 0.05).
      momentum: EMA µ of the target branch (paper: 0.99, no ramp).
      momentum_schedule: 'constant' (paper) or 'cosine' (to 1; ssl/ema.py).
      proj_hidden, proj_dim, proj_layers: projector H (paper 512, 256, 3).
      pred_hidden, pred_layers: predictor P (paper 512, 2; output = proj_dim).
      pred_last_bn: end P in a BN without affine after its last (bias-free)
        Linear, as MoCo v3's ViT model does (its ResNet model: False).
      loss_scale_2tau: multiply the loss by 2τ like the official MoCo v3 code;
        the paper's equation has no such factor (default False).
    """
    if temperature <= 0:
        raise ConfigError('ssl.kwargs.temperature', temperature, 'must be > 0.')
    momentum_fn = ema.make_momentum_fn(momentum, momentum_schedule)
    h = make_online_heads(proj_hidden=proj_hidden, proj_dim=proj_dim,
                          proj_layers=proj_layers, pred_hidden=pred_hidden,
                          pred_layers=pred_layers, pred_last_bn=pred_last_bn,
                          pred_last_bias=False)   # MoCo v3's _build_mlp: no biases
    scale = 2.0 * temperature if loss_scale_2tau else 1.0

    def key_fn(target, encode_fn, x):
        return h.project_fn(target, encode_fn, x)

    def view_loss_fn(online, encode_fn, x, key, negatives=None):
        # One view's InfoNCE term: its query against the other view's key.
        return scale * losses.info_nce(h.query_fn(online, encode_fn, x), key,
                                       temperature, negatives)

    def loss_fn(online, target, encode_fn, h1, h2, negatives=None):
        k1, k2 = (jax.lax.stop_gradient(key_fn(target, encode_fn, x)) for x in (h1, h2))
        loss = (view_loss_fn(online, encode_fn, h1, k2, negatives)
                + view_loss_fn(online, encode_fn, h2, k1, negatives))
        return loss, {'loss': loss}

    return SSLMethod(name='mocov3', head_names=(PROJECTOR, PREDICTOR),
                     target_head_names=(PROJECTOR,), momentum_fn=momentum_fn,
                     init_heads=h.init_heads, loss_fn=loss_fn, project_fn=h.project_fn,
                     samples_per_step=1, supports_negatives=True,
                     key_fn=key_fn, view_loss_fn=view_loss_fn)
