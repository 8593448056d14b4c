"""Momentum (target) branch update (paper §1.7)."""

import jax


def ema_update(target, online, momentum: float):
    """target <- momentum * target + (1 - momentum) * online, leaf by leaf.

    `online` may hold more keys than `target` (e.g. the predictor, which has no
    target copy): only the keys of `target` are read from it.
    """
    online = {k: online[k] for k in target}
    return jax.tree.map(lambda t, o: momentum * t + (1.0 - momentum) * o,
                        target, online)
