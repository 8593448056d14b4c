"""SimCLR (Chen et al. 2020; paper §2.3): one branch, encoder -> projector H,
fed both augmented views; NT-Xent over the 2B projections:

    z_v = H(F(x_v)),  v in {1, 2}
    L = NT-Xent([z1; z2], τ)   (positive: the other view; negatives: the
                                 other 2B − 2 views, plus FedCA's dictionary)

No predictor and no target branch, so only F + H are exchanged (paper §2.3).
A step costs two samples in the paper's GFLOPs convention (§7.1).
"""

import jax

from lwfedssl_jax.errors import ConfigError
from lwfedssl_jax.models import heads
from lwfedssl_jax.ssl import losses
from lwfedssl_jax.ssl.base import SSLMethod, check_head_sizes

PROJECTOR = 'projector'


def make(*, temperature: float = 0.5, proj_hidden: int = 512,
         proj_dim: int = 256, proj_layers: int = 3) -> SSLMethod:
    """Builds SimCLR.

    Args:
      temperature: τ of NT-Xent. The paper does not state it; 0.5 is the
        SimCLR paper's default (some FedSSL code uses 0.1).
      proj_hidden, proj_dim, proj_layers: projector H (presumably MoCo v3's
        512, 256, 3; the paper does not say).

    Raises:
      ValueError: temperature <= 0.
    """
    if temperature <= 0:
        raise ConfigError('ssl.kwargs.temperature', temperature, 'must be > 0.')
    check_head_sizes(proj_hidden=proj_hidden, proj_dim=proj_dim, proj_layers=proj_layers)
    projector = heads.make_projector(proj_hidden, proj_dim, proj_layers)

    def init_heads(key, feature_dim):
        x = jax.numpy.zeros((2, feature_dim))
        return {PROJECTOR: projector.init(key, x)['params']}

    def project_fn(params, encode_fn, h):
        return projector.apply({'params': params[PROJECTOR]}, encode_fn(params, h))

    def loss_fn(online, target, encode_fn, h1, h2, negatives=None):
        del target  # No target branch: the engine passes None.
        z1 = project_fn(online, encode_fn, h1)
        z2 = project_fn(online, encode_fn, h2)
        loss = losses.nt_xent(z1, z2, temperature, negatives)
        return loss, {'loss': loss}

    return SSLMethod(name='simclr', head_names=(PROJECTOR,),
                     target_head_names=(), momentum_fn=None,
                     init_heads=init_heads, loss_fn=loss_fn, project_fn=project_fn,
                     samples_per_step=2, supports_negatives=True)
