"""Are dropped frozen blocks really not computed? Round time with depth
dropout p = 0 vs p = 0.75, clients run by `lax.map` vs `vmap`, side by side.

    python experiments/addons/depth_dropout_speed.py [--rounds 3]

ViT-Tiny (12 blocks, 32 px), layer-wise LAST stage (11 frozen blocks, the
most there is to skip), synthetic data, 2 clients x 2 local steps of batch
32 per round. Each skipped block is a `lax.cond` with a scalar predicate per
client: under `lax.map` the skipped branch is not executed; under `vmap` the
predicate is batched and `cond` becomes `select`, so both branches run.
Prints seconds per round and the ratio p=0.75 / p=0 per execution strategy.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..'))
from configs import cifar10_vit_tiny  # noqa: E402
from experiments.round_bench import round_runner, time_rounds  # noqa: E402
from lwfedssl_jax import platform  # noqa: E402


def round_seconds(execution: str, p: float, rounds: int) -> float:
    config = cifar10_vit_tiny.get_config('smoke=1,mode=layerwise')
    config.unlock()
    config.fl.client_execution, config.fl.depth_dropout = execution, p
    config.fl.batch_size, config.fl.local_epochs, config.fl.total_rounds = 32, 1, 12
    config.fl.num_clients = config.fl.clients_per_round = 2
    one_round, _ = round_runner(config, n_max=64)
    return time_rounds(one_round, rounds)[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=3)
    args = ap.parse_args()
    platform.setup()
    print('| execution | s/round p=0 | s/round p=0.75 | ratio |\n|---|---|---|---|')
    for execution in ('map', 'vmap'):
        base, dd = (round_seconds(execution, p, args.rounds) for p in (0.0, 0.75))
        print(f'| {execution} | {base:.2f} | {dd:.2f} | {dd / base:.2f}x |', flush=True)


if __name__ == '__main__':
    main()
