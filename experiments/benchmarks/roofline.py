"""Roofline: achieved GFLOP/s of the jitted client step, as a fraction of this
machine's dense-matmul GFLOP/s, measured in the same run (issue 12, item 5).

    python experiments/benchmarks/roofline.py [--batch 64] [--repeats 5]

The reference is a float32 matmul of two 2048 x 2048 matrices (2 * 2048^3
FLOPs). Each client step is the engine's own (`LocalStep.step`: two-view
augmentation, frozen prefix, trainable forward / backward, AdamW, EMA
target), jitted alone, on random uint8 images; its FLOPs are XLA's
`cost_analysis()` of that compiled step (the count the resource report
uses). Rows: the quickstart ViT and ViT-Tiny (32x32), e2e and the last
layer-wise stage. Prints the median step time after a warm-up, the step's
GFLOP/s and its fraction of the matmul's.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..'))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from experiments.benchmarks import harness  # noqa: E402
from lwfedssl_jax import platform  # noqa: E402
from lwfedssl_jax.accounting.xla_cost import compiled_cost  # noqa: E402


def median_seconds(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def matmul_gflops(repeats: int) -> float:
    a = jax.random.normal(jax.random.key(0), (2048, 2048))
    b = jax.random.normal(jax.random.key(1), (2048, 2048))
    return 2 * 2048 ** 3 / median_seconds(jax.jit(jnp.matmul), (a, b), repeats) / 1e9


def client_step(config, batch: int, repeats: int) -> tuple[float, float]:
    """(XLA FLOPs, median seconds) of one client step of the LAST stage."""
    step = harness.build_client_step(config, batch)
    # Counted on the loop-free twin: XLA counts a loop's body once.
    flops = compiled_cost(step.fns.local.counted_step, *step.args).flops
    return flops, median_seconds(jax.jit(step.fns.local.step), step.args, repeats)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--repeats', type=int, default=5)
    args = ap.parse_args()
    platform.setup()
    peak = matmul_gflops(args.repeats)
    rows = []
    for name, short, _ in harness.MODELS:
        for mode in ('e2e', 'layerwise'):
            config = harness.model_config(short, mode)
            flops, seconds = client_step(config, args.batch, args.repeats)
            rows.append((name, mode, flops, seconds))
            print(f'{name} {mode}: {seconds * 1e3:.1f} ms, {flops / seconds / 1e9:.1f} GFLOP/s',
                  flush=True)
    print(f'\n# batch {args.batch}, {jax.device_count()} x {jax.devices()[0].platform}; '
          f'float32 2048^2 matmul: {peak:.1f} GFLOP/s\n')
    print('| model | mode (last stage) | step (ms) | XLA GFLOPs / step | GFLOP/s | of matmul |')
    print('|---|---|---|---|---|---|')
    for name, mode, flops, seconds in rows:
        rate = flops / seconds / 1e9
        print(f'| {name} | {mode} | {seconds * 1e3:.1f} | {flops / 1e9:.2f} | {rate:.1f} '
              f'| {rate / peak:.0%} |')


if __name__ == '__main__':
    main()
