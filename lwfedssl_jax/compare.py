"""Compare finished (or running) runs side by side.

    python -m lwfedssl_jax.compare runs/e2e runs/layerwise runs/progressive
    python -m lwfedssl_jax.compare runs/e2e runs/layerwise --baseline runs/layerwise
    python -m lwfedssl_jax.compare runs/* --out runs/compare_all

Prints a markdown table, one row per run: mode, SSL method, FL algorithm,
final kNN and linear-probe top-1 (with the difference to the baseline run in
points), peak memory of one client step (GiB, XLA), GFLOPs per client
(paper convention), communication per client in the paper's "GB"
(bytes / 2^20 / 1000) and wall time (each with its ratio to the baseline).
The baseline is the first run unless `--baseline` names another (a 0-based
index or one of the given directories). Writes the table to
`<out>/compare.md` and the overlaid curves (`plots.plot_overlay`) to `<out>`.
A run still training shows 'n/a' where its summary is not written yet.
"""

import math
import os

from absl import flags

from lwfedssl_jax import cli
from lwfedssl_jax.errors import UserError
from lwfedssl_jax.run_record import RunRecord, config_value, read_run

USAGE = ('usage: python -m lwfedssl_jax.compare RUN_DIR [RUN_DIR ...] '
         '[--baseline INDEX_OR_RUN_DIR] [--out DIR]')

COLUMNS = ('run', 'mode', 'SSL', 'FL', 'kNN top-1 (%)', 'linear-probe top-1 (%)',
           'peak step memory (GiB, XLA)', 'GFLOPs (paper conv.)',
           'comm. ("GB" = B/2^20/1000)', 'wall time (s)')
HEADER = '| ' + ' | '.join(COLUMNS) + ' |'


def read_runs(run_dirs: list[str]) -> list[RunRecord]:
    """The runs, labelled by directory name (with as many parent directories
    as needed to tell apart runs of the same name)."""
    return [read_run(d, label) for d, label in zip(run_dirs, run_labels(run_dirs))]


def run_labels(run_dirs: list[str]) -> list[str]:
    """Directory names, made unique by prefixing parent directories (and
    `#i`, the position, when the same directory is given twice)."""
    paths = [os.path.normpath(os.path.abspath(d)) for d in run_dirs]
    unique = list(dict.fromkeys(paths))
    parts = [p.split(os.sep) for p in unique]
    depth = [1] * len(parts)
    while True:
        labels = ['/'.join(p[-n:]) for p, n in zip(parts, depth)]
        grow = [i for i, l in enumerate(labels)
                if labels.count(l) > 1 and depth[i] < len(parts[i])]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    label_of = dict(zip(unique, labels))
    return [label_of[p] if paths.count(p) == 1 else f'{label_of[p]} #{i}'
            for i, p in enumerate(paths)]


def resolve_baseline(value: str, run_dirs: list[str]) -> int:
    """Index of the baseline run from `--baseline` (an index or a run dir).

    Raises:
      UserError: `value` is neither an index into the runs nor one of them.
    """
    try:
        index = int(value)
    except ValueError:
        index = None
    if index is not None:
        if 0 <= index < len(run_dirs):
            return index
        raise UserError(f'--baseline={value!r}: no run with that index; allowed: 0 to '
                        f'{len(run_dirs) - 1} (0-based) or one of the run directories.')
    wanted = os.path.realpath(value)
    for i, d in enumerate(run_dirs):
        if os.path.realpath(d) == wanted:
            return i
    raise UserError(f'--baseline={value!r}: not one of the runs compared; allowed: an index '
                    f'0 to {len(run_dirs) - 1} or one of {", ".join(run_dirs)}.')


def run_values(record: RunRecord) -> dict:
    """The figures of one table row (None where the run lacks them)."""
    summary = record.summary or {}
    resources = summary.get('resources') or {}
    final = record.final_eval or {}
    memory = summary.get('max_step_memory_bytes')
    return {
        'mode': record.setting('mode', 'mode'),
        'ssl': record.setting('ssl_method', 'ssl.name'),
        'fl': record.setting('fl_algorithm', 'fl.algorithm'),
        'knn': final.get('knn_top1'),
        'probe': final.get('linear_probe_top1'),
        'memory_gib': None if memory is None else memory / 2 ** 30,
        'gflops': resources.get('paper_gflops'),
        'comm_gb': resources.get('comm_paper_gb'),
        'wall_s': summary.get('wall_time_s'),
    }


def format_table(records: list[RunRecord], baseline_index: int) -> str:
    """Markdown table of the runs; differences and ratios are to
    `records[baseline_index]`, whose label is marked '(baseline)'.

    Accuracy cells read `78.4 (+2.1)` (points above the baseline), resource
    cells `12.3 (0.45x)`; 'n/a' where a value is missing. Unfinished runs
    are listed below the table.
    """
    rows = [run_values(r) for r in records]
    base = rows[baseline_index]
    lines = [HEADER, '|' + '---|' * len(COLUMNS)]
    for i, (record, row) in enumerate(zip(records, rows)):
        is_base = i == baseline_index
        label = f'{record.label} (baseline)' if is_base else record.label
        cells = [label, *(_text(row[k]) for k in ('mode', 'ssl', 'fl'))]
        cells += [_accuracy_cell(row[k], None if is_base else base[k]) for k in ('knn', 'probe')]
        cells += [_ratio_cell(row[k], None if is_base else base[k], fmt)
                  for k, fmt in (('memory_gib', _sig3), ('gflops', _sig3),
                                 ('comm_gb', _sig3), ('wall_s', '{:.1f}'.format))]
        lines.append('| ' + ' | '.join(cells) + ' |')
    unfinished = [r for r in records if not r.finished]
    if unfinished:
        lines.append('')
        for r in unfinished:
            total = _text(config_value(r.config, 'fl.total_rounds'))
            lines.append(f'Unfinished: {r.label} ({len(r.rounds)} of {total} rounds logged).')
    return '\n'.join(lines) + '\n'


def _text(value) -> str:
    return 'n/a' if value is None else str(value)


def _accuracy_cell(value, ref) -> str:
    """`78.4 (+2.1)`: top-1 % and its difference to the baseline in points."""
    if value is None:
        return 'n/a'
    return f'{value:.1f}' + ('' if ref is None else f' ({value - ref:+.1f})')


def _ratio_cell(value, ref, fmt) -> str:
    """`12.3 (0.45x)`: the value and its ratio to the baseline (no ratio
    when the baseline lacks the value or it is 0)."""
    if value is None:
        return 'n/a'
    if not ref:
        return fmt(value)
    ratio = value / ref
    return f'{fmt(value)} ({ratio:.2f}x)' if ratio >= 0.01 else f'{fmt(value)} ({ratio:.1e}x)'


def _sig3(value: float) -> str:
    """Three significant digits without scientific notation (smoke runs move
    kilobytes, paper-scale runs gigabytes: a fixed precision fits neither)."""
    if value == 0 or not math.isfinite(value):
        return f'{value:g}'
    if abs(value) >= 1000:
        return f'{value:,.0f}'
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    return f'{value:.{decimals}f}'


def compare(run_dirs: list[str], baseline: str, outdir: str) -> tuple[str, list[str]]:
    """Reads the runs, writes `<outdir>/compare.md` and the overlaid plots.

    Returns:
      `(table, paths written)`.
    """
    from lwfedssl_jax import plots   # matplotlib only when plotting
    index = resolve_baseline(baseline, run_dirs)
    records = read_runs(run_dirs)
    table = format_table(records, index)
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, 'compare.md')
    with open(path, 'w') as f:
        f.write(table)
    return table, [path] + plots.plot_overlay(records, outdir)


def main(argv):
    run_dirs = argv[1:]
    if not run_dirs:
        raise UserError(f'no run directories given; {USAGE}')
    table, paths = compare(run_dirs, _BASELINE.value, _OUT.value)
    print(table)
    print('Written:', ', '.join(paths))


def _define_flags():
    """Command-line flags (defined only when run as a program, so that the
    module can be imported beside other entry points)."""
    global _BASELINE, _OUT
    _BASELINE = flags.DEFINE_string(
        'baseline', '0', 'Run to compare against: 0-based index into the runs given, '
        'or one of the run directories.')
    _OUT = flags.DEFINE_string('out', 'runs/compare',
                               'Directory for compare.md and the overlaid plots.')


if __name__ == '__main__':
    _define_flags()
    cli.run(main)
