"""How a round runs its participating clients: `vmap`, `lax.map`, or chunks.

`make_clients_update` turns one client's `local_train` (`client.py`) into
the update of all K participants, with per-client inputs and outputs
stacked along a leading `[K]` axis.
"""

from typing import Callable

import jax

from lwfedssl_jax.errors import ConfigError

EXECUTIONS = ('vmap', 'map', 'chunked')


def check_execution(execution: str, chunk: int) -> None:
    """Raises `ConfigError` unless `fl.client_execution` / `fl.client_chunk`
    can run (see `make_clients_update`)."""
    if execution not in EXECUTIONS:
        raise ConfigError('fl.client_execution', execution, f'unknown; choices: '
                          f'{EXECUTIONS}.')
    if execution == 'chunked' and chunk < 1:
        raise ConfigError('fl.client_chunk', chunk, 'fl.client_execution=chunked '
                          'needs fl.client_chunk >= 1.')


def make_clients_update(local_train: Callable, execution: str = 'vmap',
                        chunk: int = 0) -> Callable:
    """All participating clients of a round.

    Returns `clients_update(frozen, sent, states, images, sizes, keys,
    round_index, public)` where states (leaves `[K, ...]`), images
    `[K, N_max, H, W, 3]`, sizes `[K]`, keys `[K]` are per client and frozen,
    sent, round_index, public are broadcast; outputs (uploads, new states,
    metrics) are stacked `[K, ...]`.

    Args:
      execution: 'vmap' (parallel; the accelerator default), 'map'
        (`lax.map`, sequential inside jit: less memory, faster on CPU) or
        'chunked' (`lax.map` over chunks of `chunk` clients, vmapped within).
      chunk: clients per vmapped chunk for 'chunked' (>= 1).
    """
    check_execution(execution, chunk)

    def clients_update(frozen, sent, states, images, sizes, keys, round_index,
                       public):
        if execution == 'vmap':
            return jax.vmap(local_train, in_axes=(None, None, 0, 0, 0, 0, None, None))(
                frozen, sent, states, images, sizes, keys, round_index, public)
        per_client = lambda xs: local_train(frozen, sent, *xs, round_index, public)
        return jax.lax.map(per_client, (states, images, sizes, keys),
                           batch_size=chunk if execution == 'chunked' else None)

    return clients_update
