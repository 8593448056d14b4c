"""Every Table 2 row (plus L-DAWA) at quickstart scale, one table.

    python experiments/table2/run_quickstart.py [--workdir runs/table2_qs] [--rows fedema,fedca]

Trains each row of `configs/table2.py:scale=quickstart` (digits, 4 clients,
16 rounds; centralised rows: 1 client holding all the data) one after the
other, then prints linear-probe and kNN accuracy against a randomly
initialised encoder, communication per client and wall time per row, and
writes `table.md` and `results.json` to the workdir. A row whose
`summary.json` exists is not rerun, and each run resumes from its own
checkpoints, so an interrupted sweep continues where it stopped.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

from configs import table2  # noqa: E402
from lwfedssl_jax import platform, train  # noqa: E402


def run_row(row: str, workdir: str, random_baseline: bool) -> dict:
    path = os.path.join(workdir, row, 'summary.json')
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    config = table2.get_config(f'row={row},scale=quickstart')
    config.unlock()
    config.eval.at_stage_end = False
    config.eval.random_baseline = random_baseline
    config.log.step_flops = 'none'
    config.lock()
    print(f'\n=== {row} ===', flush=True)
    summary = train.run(config, os.path.join(workdir, row))
    summary.pop('params')
    return summary


def format_table(results: dict) -> str:
    random = next((s['random_encoder_eval'] for s in results.values()
                   if s.get('random_encoder_eval')), None)
    if random is None:
        raise SystemExit('No row holds the random-encoder baseline: rerun the first '
                         'row of the sweep (its summary.json removed).')
    lines = ['| row | method | mode | algorithm / aggregator | linear probe % '
             '(vs random) | kNN % | comm. per client (MB) | wall time (s) |',
             '|---|---|---|---|---|---|---|---|',
             f'| random encoder | - | - | - | {random["linear_probe_top1"]:.1f} | '
             f'{random["knn_top1"]:.1f} | - | - |']
    for row, s in results.items():
        method, mode, algorithm, aggregator, _ = table2.ROWS[row]
        r, e = s['resources'], s['final_eval']
        gain = e['linear_probe_top1'] - random['linear_probe_top1']
        lines.append(
            f'| {row} | {method} | {mode} | {algorithm} / {aggregator} | '
            f'{e["linear_probe_top1"]:.1f} ({gain:+.1f}) | {e["knn_top1"]:.1f} | '
            f'{(r["bytes_down"] + r["bytes_up"]) / 2**20:.2f} | {s["wall_time_s"]:.0f} |')
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--workdir', default='runs/table2_quickstart')
    parser.add_argument('--rows', default=','.join(table2.ROWS),
                        help='comma-separated rows of configs/table2.py')
    args = parser.parse_args()
    rows = args.rows.split(',')
    unknown = sorted(set(rows) - set(table2.ROWS))
    if unknown:
        parser.error(f'unknown rows {unknown}; choices: {sorted(table2.ROWS)}')
    platform.setup()
    results = {row: run_row(row, args.workdir, random_baseline=i == 0)
               for i, row in enumerate(rows)}
    table = format_table(results)
    with open(os.path.join(args.workdir, 'table.md'), 'w') as f:
        f.write(table)
    with open(os.path.join(args.workdir, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1)
    print('\n' + table)


if __name__ == '__main__':
    main()
