"""Table 6's resource rows (ViT-Tiny, paper settings), compile-only.

    python experiments/addons/table6_resources.py [--out experiments/addons]

For each row of Table 6 (`configs/tables6_8.py:scale=paper`: lw, lw_dd,
lw_pa, lw_ra, prog, prog_dd, prog_pa, prog_ra) it prints XLA's peak memory
of one client step (last stage), GFLOPs in the paper's convention and
communication in the paper's "GB", each with its ratio to the plain method,
the catch-up downloads, and the paper's figures. Writes
`table6_resources.{md,json}` to `--out`.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

from configs import tables6_8  # noqa: E402
from lwfedssl_jax import platform, resources  # noqa: E402

ROWS = ('lw', 'lw_dd', 'lw_pa', 'lw_ra', 'prog', 'prog_dd', 'prog_pa', 'prog_ra')
# Paper Table 6: (memory GB, GFLOPs, communication GB).
PAPER = {'lw': (2.61, 139, 1.66), 'lw_dd': (2.49, 111, 1.66), 'lw_pa': (2.63, 139, 1.66),
         'lw_ra': (2.86, 318, 1.66), 'prog': (8.69, 318, 5.04),
         'prog_dd': (5.24, 233, 3.97), 'prog_pa': (8.72, 318, 5.04),
         'prog_ra': (9.00, 496, 5.04)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.path.dirname(os.path.abspath(__file__)))
    args = ap.parse_args()
    platform.setup()
    reports = {}
    for row in ROWS:
        config = tables6_8.get_config(f'row={row},scale=paper')
        config.unlock()
        config.log.step_flops = 'last_stage'
        config.accounting.examples_per_client = 5000   # CIFAR-10 over 10 clients
        print(f'[table6] {row}: compiling...', flush=True)
        reports[row] = resources.predict(config)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, 'table6_resources.json'), 'w') as f:
        json.dump({row: {k: v for k, v in r.items() if k != 'per_round'}
                   for row, r in reports.items()}, f, indent=1)

    def gib(report):
        return report['max_step_memory_bytes'] / 2**30

    def cell(value, ref, fmt):
        return 'n/a' if value is None else f'{value:{fmt}} ({value / ref:.2f}x)'

    lines = ['| row | peak step memory GiB (XLA, last stage) | GFLOPs (paper conv.) '
             '| comm. "GB" | catch-up "GB" | paper: mem / GFLOPs / comm |',
             '|---|---|---|---|---|---|']
    for row, r in reports.items():
        group = 'lw' if row.startswith('lw') else 'prog'
        res, ref, base = r['resources'], reports[group]['resources'], reports[group]
        paper, paper_base = PAPER[row], PAPER[group]
        lines.append(
            f'| {row} | {cell(gib(r), gib(base), ".3f")} '
            f'| {cell(res["paper_gflops"], ref["paper_gflops"], ".1f")} '
            f'| {cell(res["comm_paper_gb"], ref["comm_paper_gb"], ".3f")} '
            f'| {res["catch_up_bytes"] / 2**20 / 1000:.3f} '
            f'| {paper[0]} ({paper[0] / paper_base[0]:.2f}x) / {paper[1]} '
            f'({paper[1] / paper_base[1]:.2f}x) / {paper[2]} ({paper[2] / paper_base[2]:.2f}x) |')
    table = '\n'.join(lines) + '\n'
    with open(os.path.join(args.out, 'table6_resources.md'), 'w') as f:
        f.write(table)
    print(table)


if __name__ == '__main__':
    main()
