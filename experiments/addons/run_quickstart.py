"""Tables 6 and 7 (and the Table 8 setting of the issue) at quickstart scale.

    python experiments/addons/run_quickstart.py [--workdir runs/addons_qs] [--rows lw,lw_ra]

Trains the rows of `configs/tables6_8.py:scale=quickstart` one after the
other (a row whose summary.json exists is not rerun; each run resumes from
its own checkpoints), plus `part25_drop50_lw`: 100 clients, 25 per round,
each failing to report with probability 0.5, layer-wise. Then writes, with
`lwfedssl_jax.compare`, one table per group with ratios to its plain row
(Table 6: `lw`, `prog`; Table 7: `part25_fedmocov3`) and the overlaid curves
(Fig. 6's divergence among them) under `<workdir>/compare_<group>/`, and all
tables to `<workdir>/tables.md`.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

from configs import tables6_8  # noqa: E402
from lwfedssl_jax import compare, platform, train, validation  # noqa: E402

GROUPS = {
    'table6_lw': ['lw', 'lw_dd', 'lw_pa', 'lw_ra'],
    'table6_prog': ['prog', 'prog_dd', 'prog_pa', 'prog_ra'],
    'table7': ['part25_fedmocov3', 'part25_lw', 'part25_prog', 'part50_fedmocov3',
               'part50_lw', 'part50_prog', 'part25_drop50_lw'],
}


def config_of(row: str):
    if row == 'part25_drop50_lw':
        c = tables6_8.get_config('row=part25_lw')
        c.unlock()
        c.fl.dropout = 0.5
        c.lock()
        return c
    return tables6_8.get_config(f'row={row}')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--workdir', default='runs/addons_qs')
    ap.add_argument('--rows', default='', help='comma-separated subset')
    args = ap.parse_args()
    platform.setup()
    wanted = set(filter(None, args.rows.split(',')))
    rows = [r for g in GROUPS.values() for r in g if not wanted or r in wanted]
    configs = {r: config_of(r) for r in rows}
    for config in configs.values():   # every row checked before the first trains
        validation.check_config(config)
    for i, row in enumerate(rows):
        workdir = os.path.join(args.workdir, row)
        if os.path.exists(os.path.join(workdir, 'summary.json')):
            continue
        configs[row].unlock()
        configs[row].eval.random_baseline = i == 0
        print(f'\n=== {row} ===', flush=True)
        train.run(configs[row], workdir)
    out = []
    for group, members in GROUPS.items():
        dirs = [os.path.join(args.workdir, r) for r in members
                if os.path.exists(os.path.join(args.workdir, r, 'summary.json'))]
        if dirs:
            table, _ = compare.compare(dirs, '0', os.path.join(args.workdir, f'compare_{group}'))
            out.append(f'## {group}\n\n{table}')
    with open(os.path.join(args.workdir, 'tables.md'), 'w') as f:
        f.write('\n'.join(out))
    print('\n'.join(out))


if __name__ == '__main__':
    main()
