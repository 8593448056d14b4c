"""Which clients take part in a round (paper §4.2; default: all of them)."""

import jax
import jax.numpy as jnp
import numpy as np


def sample_clients(key: jax.Array, num_clients: int,
                   clients_per_round: int) -> jax.Array:
    """Sorted `[K]` int32 ids, uniformly without replacement (all if K == N)."""
    if not 1 <= clients_per_round <= num_clients:
        raise ValueError(f'fl.clients_per_round={clients_per_round} must be in '
                         f'[1, fl.num_clients={num_clients}].')
    if clients_per_round == num_clients:
        return jnp.arange(num_clients, dtype=jnp.int32)
    ids = jax.random.choice(key, num_clients, (clients_per_round,), replace=False)
    return jnp.asarray(np.sort(np.asarray(ids)), jnp.int32)


def sample_reports(key: jax.Array, clients_per_round: int, dropout: float) -> jax.Array:
    """`[K]` bool: which participants report back; each one independently
    fails with probability `dropout` (paper Table 8)."""
    return jax.random.uniform(key, (clients_per_round,)) >= dropout
