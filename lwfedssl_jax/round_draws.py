"""What each round draws from `config.seed`: its participants, the ones that
report back, and each participant's depth-dropout blocks. The training loop,
the resource report (`resources.py`) and tests draw them through these same
functions, so every path sees the same rounds.
"""

import jax
import jax.numpy as jnp
import numpy as np

from lwfedssl_jax.federated.client import depth_dropout_keep
from lwfedssl_jax.federated.sampling import sample_clients, sample_reports
from lwfedssl_jax.utils import rng


def round_clients(config, stage: int, round_index: int, num_clients: int):
    """Participating client ids `[K]` of a round (deterministic from the seed)."""
    return sample_clients(rng.fold(rng.stream(config.seed, rng.SAMPLING), stage,
                                   round_index),
                          num_clients, config.fl.clients_per_round)


def round_keeps(config, spec, round_index: int, selected) -> np.ndarray:
    """`[K, num_blocks]` bool: the blocks each participant runs (depth
    dropout), redrawn exactly as the round function's clients draw them."""
    key = rng.fold(rng.stream(config.seed, rng.TRAIN), spec.index, round_index)
    return np.asarray(jax.vmap(lambda c: depth_dropout_keep(
        jax.random.fold_in(key, c), spec, config.fl.depth_dropout))(jnp.asarray(selected)))


def round_reports(config, stage: int, round_index: int):
    """`[K]` bool: which participants of a round report back (`fl.dropout`)."""
    return sample_reports(rng.fold(rng.stream(config.seed, rng.DROPOUT), stage,
                                   round_index),
                          config.fl.clients_per_round, config.fl.dropout)
