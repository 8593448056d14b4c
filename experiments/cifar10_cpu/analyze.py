"""The CPU-scale main study's table: accuracy over seeds and resources per mode.

    python experiments/cifar10_cpu/analyze.py [--runs runs/c10cpu] [--out experiments/cifar10_cpu]

Reads `<runs>/<mode>_s<seed>/summary.json` (kNN and linear probe after
training, the random encoder, wall time), the fine-tuning results that
`python -m lwfedssl_jax.evaluate --protocol finetune` wrote to
`<runs>/<mode>_s<seed>/eval/finetune_step<N>.json` (and the Scratch rows,
`--scratch`, in the e2e run's folder: `finetune_scratch_step<N>.json`), and
the compile-only resource report `<out>/resources/resources.json`
(`python -m lwfedssl_jax.resources --config configs/cifar10_cpu.py
--config.accounting.outdir=experiments/cifar10_cpu/resources`). Writes
`<out>/table.md` and `<out>/accuracy.png`, and prints the table.

Accuracy cells are the mean over the seeds found, with every seed's value in
parentheses; "vs e2e" is the difference of the means. The paper's CIFAR-10
column (Table 2, MoCo v3; full fine-tuning of ViT-Tiny pre-trained on COCO)
sits beside ours for the direction of the gaps, not for the levels.
"""

import argparse
import glob
import json
import os
import re

import numpy as np

MODES = ('e2e', 'layerwise', 'progressive')
# Paper Table 2 (paper notes §7.3), MoCo v3 rows: CIFAR-10 fine-tuning top-1 and
# the resource ratios to FedMoCoV3 (memory, GFLOPs, communication).
PAPER = {
    'e2e': dict(c10=83.95, memory=1.00, gflops=1.00, comm=1.00),
    'layerwise': dict(c10=83.43, memory=0.30, gflops=0.24, comm=0.20),
    'progressive': dict(c10=86.53, memory=1.00, gflops=0.54, comm=0.60),
    'scratch': dict(c10=63.28),
}
# Metric columns: (summary / eval file key, header).
METRICS = (('knn_top1', 'kNN top-1'), ('linear_probe_top1', 'linear probe top-1'),
           ('finetune_top1', 'fine-tune top-1'), ('finetune_macro_f1', 'fine-tune macro F1'))


def _load(path: str):
    with open(path) as f:
        return json.load(f)


def _finetune(run: str, scratch: bool) -> dict | None:
    """The newest fine-tuning result of a run folder (its first dataset)."""
    pattern = 'finetune_scratch_step*.json' if scratch else 'finetune_step*.json'
    files = glob.glob(os.path.join(run, 'eval', pattern))
    if not files:
        return None
    newest = max(files, key=lambda f: int(re.search(r'step(\d+)', f).group(1)))
    result = _load(newest)
    return dict(next(iter(result['results'].values())), settings=result.get('settings', {}))


def collect(runs: str) -> dict:
    """{row: {metric: {seed: value}}, ...} plus wall times and seeds."""
    rows = {m: {} for m in (*MODES, 'random encoder', 'scratch')}
    walls = {m: {} for m in MODES}
    for path in sorted(glob.glob(os.path.join(runs, '*_s*', 'summary.json'))):
        name = os.path.basename(os.path.dirname(path))
        mode, seed = name.rsplit('_s', 1)
        if mode not in MODES:
            continue
        seed, summary, run = int(seed), _load(path), os.path.dirname(path)
        walls[mode][seed] = summary['wall_time_s']
        for key, value in summary['final_eval'].items():
            rows[mode].setdefault(key, {})[seed] = value
        tuned = _finetune(run, scratch=False)
        for key, value in (tuned or {}).items():
            if key.startswith('finetune_'):
                rows[mode].setdefault(key, {})[seed] = value
        if mode == 'e2e':   # the random encoder of a seed is the same in every mode
            for key, value in summary['random_encoder_eval'].items():
                rows['random encoder'].setdefault(key, {})[seed] = value
            scratch = _finetune(run, scratch=True)
            for key, value in (scratch or {}).items():
                if key.startswith('finetune_'):
                    rows['scratch'].setdefault(key, {})[seed] = value
    return {'rows': rows, 'walls': walls}


def _cell(values: dict) -> str:
    if not values:
        return '-'
    seeds = sorted(values)
    each = ' / '.join(f'{values[s]:.1f}' for s in seeds)
    return f'{np.mean([values[s] for s in seeds]):.1f} ({each})'


def _mean(values: dict) -> float | None:
    return float(np.mean(list(values.values()))) if values else None


def format_table(data: dict, resources: dict | None) -> str:
    rows, walls = data['rows'], data['walls']
    seeds = sorted({s for r in rows.values() for v in r.values() for s in v})
    head = ['row'] + [h for _, h in METRICS] + [
        'probe vs e2e', 'fine-tune vs e2e', 'paper C-10 fine-tune (vs e2e)',
        'memory (XLA GiB, vs e2e)', 'GFLOPs paper conv. (vs e2e)', 'comm. "GB" (vs e2e)',
        'paper ratios mem / GFLOPs / comm', 'wall time per run (min)']
    lines = [f'Seeds: {", ".join(map(str, seeds)) or "none yet"}. Cells: mean (each seed).', '',
             '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    base = rows['e2e']
    for name, row in rows.items():
        cells = [name] + [_cell(row.get(k, {})) for k, _ in METRICS]
        for key in ('linear_probe_top1', 'finetune_top1'):
            ours, ref = _mean(row.get(key, {})), _mean(base.get(key, {}))
            cells.append('-' if ours is None or ref is None or name == 'e2e'
                         else f'{ours - ref:+.1f}')
        paper = PAPER.get(name, {})
        cells.append('-' if 'c10' not in paper else
                     f'{paper["c10"]:.2f} ({paper["c10"] - PAPER["e2e"]["c10"]:+.2f})')
        res = (resources or {}).get('modes', {}).get(name)
        if res:
            e2e = resources['modes']['e2e']
            cells += [f'{res[k] * f:.3f} ({res[k] / e2e[k]:.2f}x)' if k != 'paper_gflops'
                      else f'{res[k]:.1f} ({res[k] / e2e[k]:.2f}x)'
                      for k, f in (('memory_bytes', 2**-30), ('paper_gflops', 1),
                                   ('comm_paper_gb', 1))]
        else:
            cells += ['-'] * 3
        cells.append(' / '.join(f'{paper[k]:.2f}x' for k in ('memory', 'gflops', 'comm'))
                     if 'memory' in paper else '-')
        wall = walls.get(name, {})
        cells.append(f'{np.mean(list(wall.values())) / 60:.1f}' if wall else '-')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def resource_rows(path: str) -> dict | None:
    """Per-mode figures of `resources.json`: peak step memory (bytes), GFLOPs
    (paper convention) and communication ("GB")."""
    if not os.path.exists(path):
        return None
    reports = _load(path)['reports']
    return {'modes': {m: {'memory_bytes': reports[m]['max_step_memory_bytes'],
                          'paper_gflops': reports[m]['resources']['paper_gflops'],
                          'comm_paper_gb': reports[m]['resources']['comm_paper_gb']}
                      for m in MODES if m in reports}}


def plot(data: dict, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = list(data['rows'])
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.8 / len(METRICS)
    for i, (key, header) in enumerate(METRICS):
        means = [_mean(data['rows'][n].get(key, {})) or 0 for n in names]
        ax.bar(np.arange(len(names)) + i * width, means, width, label=header)
        for j, n in enumerate(names):   # every seed as a dot
            for v in data['rows'][n].get(key, {}).values():
                ax.plot(j + i * width, v, 'k.', ms=3)
    ax.set_xticks(np.arange(len(names)) + width * (len(METRICS) - 1) / 2, names)
    ax.set_ylabel('CIFAR-10 test accuracy (%)')
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--runs', default='runs/c10cpu')
    ap.add_argument('--out', default=os.path.dirname(os.path.abspath(__file__)))
    args = ap.parse_args()
    if not os.path.isdir(args.runs):
        raise SystemExit(f'--runs {args.runs!r} is not a directory; run '
                         'experiments/cifar10_cpu/run.sh first.')
    data = collect(args.runs)
    os.makedirs(args.out, exist_ok=True)
    table = format_table(data, resource_rows(
        os.path.join(args.out, 'resources', 'resources.json')))
    with open(os.path.join(args.out, 'table.md'), 'w') as f:
        f.write(table + '\n')
    plot(data, os.path.join(args.out, 'accuracy.png'))
    print(table)


if __name__ == '__main__':
    main()
