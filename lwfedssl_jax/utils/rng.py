"""All randomness flows from `config.seed` through `jax.random.fold_in`.

Streams are separated by a fixed tag first (so e.g. model init and data
augmentation never share a key), then by stage, round, client and step.
"""

import jax

# Tags of the independent random streams derived from the seed.
MODEL_INIT = 0
TRAIN = 1
SAMPLING = 2
EVAL = 3
RANDOM_BASELINE = 4
PUBLIC_BASE = 5
SUMMARY_VIEWS = 6   # the augmented views shown in TensorBoard
DROPOUT = 7         # which participants fail to report (fl.dropout)


def stream(seed: int, tag: int) -> jax.Array:
    """Root key of one named stream."""
    return jax.random.fold_in(jax.random.key(seed), tag)


def fold(key: jax.Array, *indices: int) -> jax.Array:
    """fold_in each index in turn: fold(k, stage, round) etc."""
    for i in indices:
        key = jax.random.fold_in(key, i)
    return key
