"""SSL methods registry: `get(name)(**kwargs) -> SSLMethod`."""

from lwfedssl_jax.errors import ConfigError, did_you_mean
from lwfedssl_jax.ssl import byol, mocov3, simclr
from lwfedssl_jax.ssl.base import SSLMethod

METHODS = {'mocov3': mocov3.make, 'byol': byol.make, 'simclr': simclr.make}


def get(name: str):
    """Returns the builder of SSL method `name`."""
    if name not in METHODS:
        raise ConfigError('ssl.name', name, f'unknown; choices: {sorted(METHODS)}.'
                          + did_you_mean(name, METHODS))
    return METHODS[name]


__all__ = ['METHODS', 'SSLMethod', 'get']
