"""Before / after MoCo v3's ViT details, on real CIFAR-10 images.

    python experiments/backbones/make_cifar_subset.py            # /tmp/c10sub
    git worktree add /tmp/before 47c40ad                          # the engine before issue 11
    cp experiments/backbones/cifar10_small_before.py /tmp/before/configs/cifar10_small.py
    python experiments/backbones/vit_details.py --before /tmp/before [--rounds 24] [--seeds 0,1]

Trains `configs/cifar10_small.py` (small ViT, 2 clients x 2,500 images,
16x16, batch 64, 2 local epochs per round) e2e and layer-wise with each
seed, once with the engine before the change (learned position embedding,
flax's conv init of the patch projection, predictor ending in a Linear with
bias) and once with this checkout (MoCo v3's fixed 2-D sine-cosine
positions, patch init with the fan of a 3 x p x p patch, bias-free heads
whose predictor ends in BatchNorm without affine), plus this checkout with
`:pos_embed=learned` to separate the position table from the rest. Every
run is a subprocess of `lwfedssl_jax.main` in its tree (a finished run is
not rerun; an interrupted one resumes from its checkpoints). Writes
`<workdir>/vit_details.md`: final kNN / linear-probe top-1 per run, the
mean over seeds, and the random-encoder rows.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(tree: str, variant: str, seed: int, workdir: str) -> dict:
    summary = os.path.join(workdir, 'summary.json')
    if not os.path.exists(summary):
        print(f'=== {workdir}', flush=True)
        subprocess.run([sys.executable, '-m', 'lwfedssl_jax.main', '--config',
                        f'configs/cifar10_small.py:{variant}', f'--config.seed={seed}',
                        '--workdir', workdir], cwd=tree, check=True)
    with open(summary) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--before', required=True, help='checkout of the engine before the change')
    ap.add_argument('--after', default=REPO, help='checkout after it (default: this one)')
    ap.add_argument('--workdir', default='runs/vit_details')
    ap.add_argument('--rounds', type=int, default=24)
    ap.add_argument('--seeds', default='0,1')
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(',')]
    workdir = os.path.abspath(args.workdir)
    arms = {'before': (os.path.abspath(args.before), ''),
            'after': (os.path.abspath(args.after), ''),
            'after, learned positions': (os.path.abspath(args.after), ',pos_embed=learned')}
    lines = ['| engine | mode | seed | kNN | probe | random kNN | random probe |',
             '|---|---|---|---|---|---|---|']
    means = []
    for mode in ('e2e', 'layerwise'):
        for arm, (tree, extra) in arms.items():
            results = []
            for seed in seeds:
                tag = arm.replace(', ', '_').replace(' ', '_')
                s = run(tree, f'mode={mode},rounds={args.rounds}{extra}', seed,
                        os.path.join(workdir, f'{tag}_{mode}_s{seed}'))
                f, r = s['final_eval'], s.get('random_encoder_eval', {})
                results.append((f['knn_top1'], f['linear_probe_top1']))
                lines.append(f'| {arm} | {mode} | {seed} | {f["knn_top1"]:.2f} | '
                             f'{f["linear_probe_top1"]:.2f} | {r.get("knn_top1", float("nan")):.2f} '
                             f'| {r.get("linear_probe_top1", float("nan")):.2f} |')
            knn, probe = np.mean(results, axis=0)
            means.append(f'| {arm} | {mode} | {knn:.2f} | {probe:.2f} |')
    table = ('\n'.join(lines) + f'\n\nMeans over seeds {seeds}:\n\n| engine | mode | kNN | probe |'
             '\n|---|---|---|---|\n' + '\n'.join(means) + '\n')
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'vit_details.md'), 'w') as f:
        f.write(table)
    print(table)


if __name__ == '__main__':
    main()
