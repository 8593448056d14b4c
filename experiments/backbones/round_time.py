"""Wall time per round: ResNet-18 vs the ViT, same data shape and batch, side by side.

    python experiments/backbones/round_time.py [--modes e2e,layerwise] [--rounds 3]

The models of `configs/cifar10_small.py` (16x16 images): the small ViT
(width 128, 4 blocks, patch 4) and ResNet-18 (CIFAR stem, width 64,
GroupNorm). One client, 4 local steps of batch 64 per round, random uint8
images; for each mode the round of its LAST stage (layer-wise: every block
but the top one frozen). Prints the median seconds per round after a warm-up
(compile excluded), the ResNet / ViT ratio, and the paper-convention forward
MACs of one image through the full encoder for comparison.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..'))
import jax  # noqa: E402

from configs import cifar10_small  # noqa: E402
from experiments.round_bench import round_runner, time_rounds  # noqa: E402
from lwfedssl_jax import builders, platform  # noqa: E402

STEPS, BATCH = 4, 64


def config_of(model: str, mode: str):
    c = cifar10_small.get_config(f'mode={mode},model={model},rounds=4')
    c.unlock()
    c.fl.num_clients = c.fl.clients_per_round = 1
    c.fl.local_epochs, c.fl.batch_size = 1, BATCH
    return c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--modes', default='e2e,layerwise')
    ap.add_argument('--rounds', type=int, default=3)
    args = ap.parse_args()
    platform.setup()
    rows = []
    for mode in args.modes.split(','):
        times = {}
        for model in ('vit', 'resnet18'):
            c = config_of(model, mode)
            one_round, _ = round_runner(c, n_max=STEPS * BATCH)
            first, median = time_rounds(one_round, args.rounds)
            enc = builders.build(c).encoder
            macs = sum(enc.part_forward_macs(p) for p in enc.encoder_parts(enc.depth))
            times[model] = median
            print(f'{mode} {model}: compile+first {first:.1f} s, round {median:.2f} s',
                  flush=True)
            rows.append((mode, model, median, macs))
        rows.append((mode, 'ratio', times['resnet18'] / times['vit'], None))
    print(f'\n# {STEPS} steps of batch {BATCH} per round, 16x16 images, '
          f'{jax.device_count()} x {jax.devices()[0].platform}\n')
    print('| mode (last stage) | model | s / round | ms / step | forward MACs / image |')
    print('|---|---|---|---|---|')
    for mode, model, t, macs in rows:
        if macs is None:
            print(f'| {mode} | ResNet-18 / ViT | {t:.2f}x | | |')
        else:
            print(f'| {mode} | {model} | {t:.2f} | {1e3 * t / STEPS:.0f} | {macs / 1e6:.1f} M |')


if __name__ == '__main__':
    main()
