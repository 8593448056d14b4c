"""Benchmark: XLA FLOPs of ONE client step, layer-wise vs end-to-end (compile only).

    python experiments/engine/client_step_flops.py                    # ViT-Tiny, batch 512
    python experiments/engine/client_step_flops.py --config.fl.batch_size=64

For each mode of `configs/cifar10_vit_tiny.py` it lowers and compiles the
exact client step the engine runs (augmentation + frozen prefix forward +
trainable forward/backward + AdamW + EMA) and reads `cost_analysis()`.
Prints a markdown table per stage and the ratio LW(last stage) / E2E.
Nothing is executed, so it needs no data; a few minutes on 2 CPU cores.
"""

import os
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from absl import app  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from lwfedssl_jax import builders, platform, public_set  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'configs/cifar10_vit_tiny.py', 'Config.', lock_config=True)


def stage_flops(config, mode, stage_indices):
    c = config.copy_and_resolve_references()
    c.mode = mode
    setup = builders.build(c)
    params, out = {}, {}
    for spec in setup.plan:
        params = builders.init_new_parts(setup, params, spec, c.seed)
        if spec.index in stage_indices or (stage_indices == 'all'):
            n = c.fl.num_clients
            fns = builders.build_stage(setup, spec, c, n, max_examples=c.fl.batch_size)
            state = jax.eval_shape(lambda p: builders.init_round_state(
                setup, fns, spec, p, n), params)
            t = time.time()
            out[spec.index] = builders.step_cost(
                fns, params, state, public_set.abstract_public(setup, c), spec,
                c.fl.batch_size, c.model.image_size).flops
            print(f'  {mode} stage {spec.index}: {out[spec.index] / 1e9:.1f} GFLOPs '
                  f'(compiled in {time.time() - t:.0f} s)', flush=True)
    return out


def main(argv):
    del argv
    platform.setup()
    config = _CONFIG.value
    depth = config.model.depth
    print(f'# Client-step XLA FLOPs, ViT depth {depth} width {config.model.width}, '
          f'{config.model.image_size}px, batch {config.fl.batch_size}')
    e2e = stage_flops(config, 'e2e', [0])[0]
    last = depth // config.blocks_per_stage - 1
    lw = stage_flops(config, 'layerwise', [0, last])
    prog = stage_flops(config, 'progressive', [0])
    print('\n| step | GFLOPs | ratio to e2e |\n|---|---|---|')
    print(f'| e2e (all {depth} blocks trained) | {e2e / 1e9:.1f} | 1.00 |')
    print(f'| layerwise stage 1 (block 1 trained) | {lw[0] / 1e9:.1f} | {lw[0] / e2e:.3f} |')
    print(f'| layerwise last stage ({depth - 1} frozen + 1 trained) | '
          f'{lw[last] / 1e9:.1f} | {lw[last] / e2e:.3f} |')
    print(f'| progressive stage 1 | {prog[0] / 1e9:.1f} | {prog[0] / e2e:.3f} |')
    print(f'| progressive last stage (its spec equals e2e) | {e2e / 1e9:.1f} | 1.00 |')


if __name__ == '__main__':
    app.run(main)
