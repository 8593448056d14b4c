"""Benchmark: one federated round with clients run by vmap vs lax.map vs chunks.

    python experiments/engine/client_execution.py                       # quickstart model
    python experiments/engine/client_execution.py --config=configs/cifar10_vit_tiny.py \
        --config.fl.batch_size=16 --config.fl.num_clients=4 --config.fl.clients_per_round=4

Runs the engine's jitted round function (all participating clients, every
local step, FedAvg) on random uint8 images, once per execution strategy, in
one process, and prints the median round time of each and its ratio to
vmap. Same config, same data, same keys for all strategies.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from experiments.round_bench import round_runner, time_rounds  # noqa: E402
from lwfedssl_jax import platform  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'configs/quickstart.py', 'Config.', lock_config=True)
_STEPS = flags.DEFINE_integer('steps_per_client', 4, 'Local steps per client.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed rounds per strategy.')
_STAGE = flags.DEFINE_integer('stage', -1, 'Stage index to benchmark (-1: last).')
_CHUNK = flags.DEFINE_integer('chunk', 2, 'Clients per chunk for "chunked".')


def main(argv):
    del argv
    platform.setup()
    base = _CONFIG.value
    k, b = base.fl.clients_per_round, base.fl.batch_size
    n_max = _STEPS.value * b // base.fl.local_epochs
    size = base.model.image_size
    results = {}
    for execution in ('vmap', 'map', 'chunked'):
        c = base.copy_and_resolve_references()
        c.fl.client_execution, c.fl.client_chunk = execution, _CHUNK.value
        one_round, spec = round_runner(c, n_max, _STAGE.value)
        results[execution] = time_rounds(one_round, _REPEATS.value)
        print(f'{execution:8s} compile+first {results[execution][0]:6.1f} s, round median '
              f'{results[execution][1]:.3f} s', flush=True)
    v = results['vmap'][1]
    print(f'\n# {c.mode} stage {spec.index}, {k} clients x {_STEPS.value} steps, batch {b}, '
          f'{c.model.name} {size}px, '
          f'{jax.device_count()} x {jax.devices()[0].platform}')
    print('| execution | round time (s) | per client-step (ms) | time / vmap |\n|---|---|---|---|')
    for name, (_, t) in results.items():
        print(f'| {name} | {t:.3f} | {1e3 * t / (k * _STEPS.value):.1f} | {t / v:.2f} |')


if __name__ == '__main__':
    app.run(main)
