"""Shared by the round-time benchmarks: the engine's jitted round function
of one stage on random uint8 images, and its timing.

Used by engine/client_execution.py, addons/depth_dropout_speed.py and
backbones/round_time.py, so every benchmark times the same round.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from lwfedssl_jax import builders, public_set
from lwfedssl_jax.utils.tree import select


def round_runner(config, n_max: int, stage: int = -1):
    """`(one_round(r), spec)`: `one_round` runs round `r` of stage `stage`
    (every client of `config.fl.num_clients` holding `n_max` random images,
    `config.fl.clients_per_round` of them taking part) and blocks until done."""
    setup = builders.build(config)
    spec = setup.plan[stage]
    params = {}
    for s in setup.plan[:spec.index + 1]:
        params = builders.init_new_parts(setup, params, s, config.seed)
    n, k, size = config.fl.num_clients, config.fl.clients_per_round, config.model.image_size
    fns = builders.build_stage(setup, spec, config, n, n_max)
    state = builders.init_round_state(setup, fns, spec, params, n)
    images = jnp.asarray(np.random.default_rng(0).integers(
        0, 256, (n, n_max, size, size, 3), dtype=np.uint8))     # [N, N_max, H, W, 3]
    sizes, selected = jnp.full((n,), n_max, jnp.int32), jnp.arange(k, dtype=jnp.int32)
    public = public_set.public_reference(setup, config, np.zeros((0, size, size, 3), np.uint8))
    frozen = select(params, spec.frozen)

    def one_round(r: int) -> None:
        jax.block_until_ready(fns.round_fn(
            frozen, state, images, sizes, selected, jnp.ones(k, bool), jnp.int32(r),
            jnp.int32(r), jax.random.key(r), public))

    return one_round, spec


def time_rounds(one_round, rounds: int) -> tuple[float, float]:
    """(seconds of the first call, compile included; median seconds of the
    next `rounds` calls)."""
    t = time.perf_counter()
    one_round(0)
    first = time.perf_counter() - t
    times = []
    for r in range(1, rounds + 1):
        t = time.perf_counter()
        one_round(r)
        times.append(time.perf_counter() - t)
    return first, float(np.median(times))
