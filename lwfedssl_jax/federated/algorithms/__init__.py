"""Federated algorithms registry: `get(name)(spec=..., method=..., ...)`.

Every entry is a `make(*, spec, method, num_clients, max_examples, rep_dim,
**kwargs) -> FederatedAlgorithm` (see `base.py`). The engine passes the
stage spec, the SSL method, the number of clients N, the padded client size
N_max and the representation width F (`ENGINE_ARGS`); the other keyword
arguments come from `config.algorithms.<name>` (see `configs/common.py`).
"""

from lwfedssl_jax.errors import ConfigError, did_you_mean
from lwfedssl_jax.federated.algorithms import fedavg, fedca, fedema, fedu
from lwfedssl_jax.federated.algorithms.base import FederatedAlgorithm

ALGORITHMS = {'fedavg': fedavg.make, 'fedu': fedu.make, 'fedema': fedema.make,
              'fedca': fedca.make}
ENGINE_ARGS = ('spec', 'method', 'num_clients', 'max_examples', 'rep_dim')


def get(name: str):
    """Returns the builder of federated algorithm `name`."""
    if name not in ALGORITHMS:
        raise ConfigError('fl.algorithm', name, f'unknown; choices: {sorted(ALGORITHMS)}.'
                          + did_you_mean(name, ALGORITHMS))
    return ALGORITHMS[name]


__all__ = ['ALGORITHMS', 'ENGINE_ARGS', 'FederatedAlgorithm', 'get']
