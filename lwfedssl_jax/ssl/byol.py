"""BYOL (Grill et al. 2020; paper §2.2): an online branch (encoder ->
projector H -> predictor P) regresses a momentum target branch (EMA encoder
-> EMA projector) across the two augmented views:

    q_v = P(H(F(x_v))),  k_v = sg(H_k(F_k(x_v))),  v in {1, 2}
    L = ℓ(q1, k2) + ℓ(q2, k1),  ℓ(q, k) = mean_i 2 − 2·cos(q_i, k_i).

No negatives: the predictor and the slowly moving target prevent collapse.
The paper gives no BYOL hyperparameters; its resource numbers equal MoCo
v3's, so the defaults are MoCo v3's heads (512/256, 3- and 2-layer) and
µ = 0.99 constant (BYOL's own cosine ramp is `momentum_schedule='cosine'`).
"""

import jax

from lwfedssl_jax.ssl import ema, losses
from lwfedssl_jax.ssl.base import PREDICTOR, PROJECTOR, SSLMethod, make_online_heads


def make(*, momentum: float = 0.99, momentum_schedule: str = 'constant',
         proj_hidden: int = 512, proj_dim: int = 256, proj_layers: int = 3,
         pred_hidden: int = 512, pred_layers: int = 2) -> SSLMethod:
    """Builds BYOL.

    Args:
      momentum: EMA µ of the target branch (paper: 0.99, as MoCo v3).
      momentum_schedule: 'constant' (paper) or 'cosine' (BYOL's ramp to 1).
      proj_hidden, proj_dim, proj_layers: projector H (512, 256, 3).
      pred_hidden, pred_layers: predictor P (512, 2; output = proj_dim).
    """
    momentum_fn = ema.make_momentum_fn(momentum, momentum_schedule)
    h = make_online_heads(proj_hidden=proj_hidden, proj_dim=proj_dim,
                          proj_layers=proj_layers, pred_hidden=pred_hidden,
                          pred_layers=pred_layers)

    def check_negatives(negatives):
        # Checked at trace time: BYOL has no softmax to put negatives into,
        # so silently ignoring them would hide a misconfigured algorithm.
        if negatives is not None:
            raise ValueError('byol does not use negatives (supports_negatives='
                             'False); pass negatives=None.')

    def key_fn(target, encode_fn, x):
        return h.project_fn(target, encode_fn, x)

    def view_loss_fn(online, encode_fn, x, key, negatives=None):
        # One view's regression term: its prediction against the other
        # view's target projection.
        check_negatives(negatives)
        return losses.byol_loss(h.query_fn(online, encode_fn, x), key)

    def loss_fn(online, target, encode_fn, h1, h2, negatives=None):
        check_negatives(negatives)
        k1, k2 = (jax.lax.stop_gradient(key_fn(target, encode_fn, x)) for x in (h1, h2))
        loss = (view_loss_fn(online, encode_fn, h1, k2)
                + view_loss_fn(online, encode_fn, h2, k1))
        return loss, {'loss': loss}

    return SSLMethod(name='byol', head_names=(PROJECTOR, PREDICTOR),
                     target_head_names=(PROJECTOR,), momentum_fn=momentum_fn,
                     init_heads=h.init_heads, loss_fn=loss_fn, project_fn=h.project_fn,
                     samples_per_step=1, supports_negatives=False,
                     key_fn=key_fn, view_loss_fn=view_loss_fn)
