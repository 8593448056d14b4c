"""Resources of every federated Table 2 row at the paper's scale (compile-only).

    python experiments/table2/resources.py [--outdir experiments/table2] [--step-flops last_stage]

For each row of `configs/table2.py:scale=paper` (ViT-Tiny, 10 clients x
5,000 CIFAR-10-sized examples, 180 rounds x 3 epochs, batch 512) it runs
`resources.predict`, the same accounting a training run logs, and prints
per client: peak step memory (XLA, last stage), paper-convention GFLOPs,
communication in the paper's "GB" (bytes / 2^20 / 1000), the persistent
client state (FedU / FedEMA) and FedCA's one-off public download, beside
the paper's Table 2 figures. FedCA's communication is also given with
COCO train2017's 118,287 images over 10 clients (11,829 each, as the paper
pre-trains), where the dictionary dominates. Writes `resources.md` and
`resources.json`. Centralised rows have no federated resources (the paper
prints "-").
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

from configs import table2  # noqa: E402
from lwfedssl_jax import platform, resources  # noqa: E402

# Paper Table 2 (memory GB, GFLOPs, communication "GB").
PAPER = {
    'fedmocov3': (8.72, 586, 8.40), 'lw_mocov3': (2.61, 139, 1.66),
    'prog_mocov3': (8.69, 318, 5.04),
    'fedbyol': (8.72, 586, 8.40), 'fedu': (8.94, 586, 8.40), 'fedema': (8.96, 586, 8.40),
    'lw_byol': (2.61, 139, 1.66), 'prog_byol': (8.69, 318, 5.04),
    'fedsimclr': (14.39, 1169, 8.03), 'fedca': (16.37, 1299, 30.69),
    'lw_simclr': (8.59, 278, 1.29), 'prog_simclr': (14.36, 635, 4.68),
}
COCO_PER_CLIENT = 11_829   # ceil(118,287 / 10)


def predict(row: str, step_flops: str, examples_per_client: int = 0) -> dict:
    config = table2.get_config(f'row={row},scale=paper')
    config.unlock()
    config.log.step_flops = step_flops
    if examples_per_client:
        config.accounting.examples_per_client = examples_per_client
    config.lock()
    return resources.predict(config)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--outdir', default='experiments/table2')
    parser.add_argument('--step-flops', default='last_stage',
                        choices=('last_stage', 'every_stage', 'none'))
    parser.add_argument('--rows', default=','.join(
        r for r in table2.ROWS if not r.startswith('centralized')))
    args = parser.parse_args()
    platform.setup()
    reports, lines = {}, [
        '| row | peak step memory GiB (XLA) | paper | GFLOPs (paper conv.) | paper '
        '| comm. "GB" | paper | client state MiB | public set MiB |',
        '|---|---|---|---|---|---|---|---|---|']
    for row in args.rows.split(','):
        print(f'[table2] {row}...', flush=True)
        r = reports[row] = predict(row, args.step_flops)
        res = r['resources']
        mem = r['max_step_memory_bytes']
        paper = PAPER.get(row, ('-', '-', '-'))
        lines.append(
            f'| {row} | {"n/a" if mem is None else f"{mem / 2**30:.3f}"} | {paper[0]} '
            f'| {res["paper_gflops"]:.1f} | {paper[1]} | {res["comm_paper_gb"]:.3f} '
            f'| {paper[2]} | {r["max_client_state_bytes"] / 2**20:.1f} '
            f'| {res["public_data_bytes"] / 2**20:.2f} |')
    if 'fedca' in reports:
        coco = predict('fedca', 'none', COCO_PER_CLIENT)['resources']
        simclr = predict('fedsimclr', 'none', COCO_PER_CLIENT)['resources']
        reports['fedca_coco'], reports['fedsimclr_coco'] = coco, simclr
        lines.append(f'| fedca, COCO-sized clients ({COCO_PER_CLIENT:,} each) | | | '
                     f'{coco["paper_gflops"]:.1f} | 1299 | {coco["comm_paper_gb"]:.3f} '
                     f'| 30.69 | | |')
        lines.append(f'| fedsimclr, COCO-sized clients | | | | | '
                     f'{simclr["comm_paper_gb"]:.3f} | 8.03 | | |')
    table = '\n'.join(lines) + '\n'
    os.makedirs(args.outdir, exist_ok=True)
    with open(os.path.join(args.outdir, 'resources.md'), 'w') as f:
        f.write(table)
    with open(os.path.join(args.outdir, 'resources.json'), 'w') as f:
        json.dump(reports, f, indent=1)
    print('\n' + table)


if __name__ == '__main__':
    main()
