"""Benchmark: cost of checkpointing every round, and checkpoint size per stage.

    python experiments/engine/checkpoint_overhead.py [--config=configs/quickstart.py:mode=layerwise]

Runs the same config twice in one process, with checkpoints off and with a
checkpoint after every round (orbax, asynchronous), and prints the median
round time of each (the first round of a stage, which compiles, excluded),
the overhead as a fraction of round time, and the on-disk size of each
stage-end checkpoint. A first run, discarded, warms the compilation cache.
"""

import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import json  # noqa: E402

import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from lwfedssl_jax import platform, train  # noqa: E402


def round_times(workdir):
    lines = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]
    rounds = [l for l in lines if l['kind'] == 'round']
    return [l['round_time_s'] for l in rounds if l['round'] > 0]


def du(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main(argv):
    del argv
    platform.setup()
    base = _CONFIG.value
    results = {}
    # A first (discarded) run warms the compilation cache; then interleaved.
    for i, enabled in enumerate((False, False, True, False, True)):
        c = base.copy_and_resolve_references()
        c.checkpoint.enabled, c.checkpoint.every_rounds = enabled, 1
        c.eval.at_stage_end = c.eval.random_baseline = False
        workdir = tempfile.mkdtemp()
        t = time.time()
        train.run(c, workdir)
        wall = time.time() - t
        if i > 0:
            results.setdefault(enabled, []).append((round_times(workdir), wall))
        if enabled:
            ends = np.cumsum([s['rounds'] for s in json.load(
                open(os.path.join(workdir, 'summary.json')))['stages']])
            sizes = {int(s): du(os.path.join(workdir, 'checkpoints', str(s)))
                     for s in ends}
        shutil.rmtree(workdir)
    med = {k: float(np.median(sum((r for r, _ in v), []))) for k, v in results.items()}
    wall = {k: float(np.mean([w for _, w in v])) for k, v in results.items()}
    print(f'\n# {base.mode}, {base.fl.total_rounds} rounds, checkpoint every round')
    print('| | median round time (s) | mean wall time (s) |\n|---|---|---|')
    for k, name in ((False, 'no checkpoints'), (True, 'checkpoint every round')):
        print(f'| {name} | {med[k]:.3f} | {wall[k]:.1f} |')
    print(f'\noverhead per round: {(med[True] - med[False]) / med[False]:+.1%} of round time; '
          f'wall {(wall[True] - wall[False]) / wall[False]:+.1%}')
    print('\n| stage-end checkpoint (step) | size on disk (KiB) |\n|---|---|')
    for step, size in sizes.items():
        print(f'| {step} | {size / 1024:.0f} |')


def _define_flags():
    global _CONFIG
    _CONFIG = config_flags.DEFINE_config_file(
        'config', 'configs/quickstart.py:mode=layerwise', 'Config.', lock_config=True)


if __name__ == '__main__':
    _define_flags()
    app.run(main)
