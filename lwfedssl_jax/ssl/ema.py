"""Momentum (target) branch: the EMA update and its momentum schedules.

Paper §1.7: after every optimiser step the target moves toward the online
branch with µ = 0.99, constant. BYOL (Grill et al. 2020, §3.2) ramps µ from
its base value to 1 with a cosine over training; that schedule is an option.
A schedule is a pure function of training progress p in [0, 1] (fraction of
the run's rounds done, including the fraction of the current round), so it
can be traced inside the jitted client step.
"""

import jax
import jax.numpy as jnp

from lwfedssl_jax.errors import ConfigError

MOMENTUM_SCHEDULES = ('constant', 'cosine')


def ema_update(target, online, momentum):
    """target <- momentum * target + (1 - momentum) * online, leaf by leaf.

    `online` may hold more keys than `target` (e.g. the predictor, which has no
    target copy): only the keys of `target` are read from it.
    """
    online = {k: online[k] for k in target}
    return jax.tree.map(lambda t, o: momentum * t + (1.0 - momentum) * o,
                        target, online)


def make_momentum_fn(base: float, schedule: str = 'constant'):
    """`progress -> µ` for a base momentum and a schedule.

    Args:
      base: µ at the start of training, in [0, 1).
      schedule: 'constant' (µ = base throughout; the paper) or 'cosine'
        (µ(p) = 1 - (1 - base) (cos(π p) + 1) / 2: base at p = 0, 1 at p = 1;
        BYOL's schedule).

    Raises:
      ValueError: base out of range or unknown schedule.
    """
    if not 0.0 <= base < 1.0:
        raise ConfigError('ssl.kwargs.momentum', base, 'must be in [0, 1).')
    if schedule not in MOMENTUM_SCHEDULES:
        raise ConfigError('ssl.kwargs.momentum_schedule', schedule,
                          f'unknown; choices: {MOMENTUM_SCHEDULES}.')
    if schedule == 'constant':
        return lambda progress: jnp.asarray(base, jnp.float32)
    return lambda progress: 1.0 - (1.0 - base) * (
        jnp.cos(jnp.pi * jnp.clip(progress, 0.0, 1.0)) + 1.0) / 2.0
