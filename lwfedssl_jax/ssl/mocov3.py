"""MoCo v3 (paper §2.1): symmetric InfoNCE between an online branch
(encoder -> projector H -> predictor P) and a momentum target branch
(EMA encoder -> EMA projector), both fed the two augmented views.
"""

import jax

from lwfedssl_jax.models import heads
from lwfedssl_jax.ssl import losses
from lwfedssl_jax.ssl.base import SSLMethod

PROJECTOR = 'projector'
PREDICTOR = 'predictor'


def make(*, temperature: float = 0.05, momentum: float = 0.99,
         proj_hidden: int = 512, proj_dim: int = 256, proj_layers: int = 3,
         pred_hidden: int = 512, pred_layers: int = 2,
         loss_scale_2tau: bool = False) -> SSLMethod:
    """Builds MoCo v3.

    Args:
      temperature: τ of InfoNCE (paper: 0.05).
      momentum: EMA µ of the target branch (paper: 0.99, no ramp).
      proj_hidden, proj_dim, proj_layers: projector H (paper 512, 256, 3).
      pred_hidden, pred_layers: predictor P (paper 512, 2; output = proj_dim).
      loss_scale_2tau: multiply the loss by 2τ like the official MoCo v3 code;
        the paper's equation has no such factor (default False).
    """
    if temperature <= 0:
        raise ValueError(f'ssl.temperature must be > 0, got {temperature}.')
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f'ssl.momentum must be in [0, 1), got {momentum}.')
    projector = heads.make_projector(proj_hidden, proj_dim, proj_layers)
    predictor = heads.make_predictor(pred_hidden, proj_dim, pred_layers)
    scale = 2.0 * temperature if loss_scale_2tau else 1.0

    def init_heads(key, feature_dim):
        kp, kq = jax.random.split(key)
        x = jax.numpy.zeros((2, feature_dim))
        z = jax.numpy.zeros((2, proj_dim))
        return {PROJECTOR: projector.init(kp, x)['params'],
                PREDICTOR: predictor.init(kq, z)['params']}

    def loss_fn(online, target, encode_fn, h1, h2):
        def query(h):
            z = projector.apply({'params': online[PROJECTOR]}, encode_fn(online, h))
            return predictor.apply({'params': online[PREDICTOR]}, z)

        def key(h):
            z = projector.apply({'params': target[PROJECTOR]}, encode_fn(target, h))
            return jax.lax.stop_gradient(z)

        q1, q2, k1, k2 = query(h1), query(h2), key(h1), key(h2)
        loss = scale * (losses.info_nce(q1, k2, temperature)
                        + losses.info_nce(q2, k1, temperature))
        return loss, {'loss': loss}

    return SSLMethod(name='mocov3', head_names=(PROJECTOR, PREDICTOR),
                     target_head_names=(PROJECTOR,), momentum=momentum,
                     init_heads=init_heads, loss_fn=loss_fn)
