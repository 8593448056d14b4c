"""Turns a study's runs into the paper's table, with the paper's numbers beside ours.

Writes, under the workdir, `<study>.md` (the table, notes and each row's
config string), `<study>.json` (every number in it, for scripts and tests)
and the study's figures `<study>_<figure>.png`.

Layout of the table: each measured column (`Study.columns`) is followed by
the paper's column it reproduces; resource cells carry their ratio to the
row's baseline (its group's end-to-end row) as `0.24x`, like the paper's
`(0.24×)`. Then our accuracy columns (kNN and linear probe of the final
encoder, `summary.json` `final_eval`; fine-tuning, when `<row>/eval/
finetune_step<N>.json` exist), then the paper's remaining columns. Every row
of the paper is listed, with a status when ours did not run at this scale.
"""

import json
import math
import os

from experiments.studylib import figures, metrics, runner
from experiments.studylib.spec import RUN_OVERRIDES, Study
from lwfedssl_jax.errors import UserError
from lwfedssl_jax.run_record import read_run


def read_manifest(study: Study, workdir: str) -> dict:
    path = runner.manifest_path(workdir, study)
    if not os.path.exists(path):
        raise UserError(f'{path} not found: run `python -m experiments.run_study '
                        f'{study.name} --workdir {workdir}` first.')
    with open(path) as f:
        return json.load(f)


def read_records(study: Study, workdir: str, scale: str) -> dict:
    """Row name -> RunRecord (None where the row has no run directory)."""
    out = {}
    for row in study.rows_at(scale):
        rowdir = os.path.join(workdir, row.name)
        has_run = all(os.path.isfile(os.path.join(rowdir, f))
                      for f in ('config.json', 'metrics.jsonl'))
        out[row.name] = read_run(rowdir, row.name) if has_run else None
    return out


def fmt(value, decimals: int | None = None) -> str:
    """Three significant digits (resources span bytes to gigabytes), or
    `decimals` places; 'n/a' for None."""
    if value is None:
        return 'n/a'
    if decimals is not None:
        return f'{value:.{decimals}f}'
    if value == 0 or not math.isfinite(value):
        return f'{value:g}'
    if abs(value) >= 1000:
        return f'{value:,.0f}'
    return f'{value:.{max(0, 2 - math.floor(math.log10(abs(value))))}f}'


def ratio(value, base):
    """`value / base`, or None when either is missing or the base is 0."""
    if value is None or not base:
        return None
    return value / base


def _ratio_text(r) -> str:
    return '' if r is None else f' ({r:.2f}x)' if r >= 0.01 else f' ({r:.1e}x)'


def _finetune_columns(study: Study, finetune: dict) -> list[tuple[str, str, str]]:
    """(header, source, key) of the fine-tuning columns the runs hold."""
    sources = []
    for results in finetune.values():
        for kind in ('pretrained', 'scratch'):
            sources += [s for s in (results[kind] or {}) if s not in sources]
    columns = []
    for source in sources:
        for metric in study.finetune_metrics:
            key = metrics.finetune_metric(source, metric)
            if any(key in ((r[k] or {}).get(source) or {})
                   for r in finetune.values() for k in ('pretrained', 'scratch')):
                short = key.removeprefix('finetune_')
                columns.append((f'FT {metrics.source_label(source)} {short}', source, key))
    return columns


def _finetune_cells(columns, results) -> list:
    values = [((results or {}).get(source) or {}).get(key) for _, source, key in columns]
    return values


def build(study: Study, workdir: str) -> tuple[str, dict]:
    """The markdown table and its data for the runs under `workdir`."""
    manifest = read_manifest(study, workdir)
    scale = manifest['scale']
    records = read_records(study, workdir, scale)
    finished = {n: r for n, r in records.items() if r is not None and r.finished}
    finetune = {n: metrics.read_finetune(r.workdir) for n, r in finished.items()}
    ft_columns = _finetune_columns(study, finetune)
    with_avg = len(ft_columns) >= 2 and len(study.finetune_metrics) == 1
    shown_paper = {c.paper for c in study.columns if c.paper}
    rest = [c for c in study.paper_columns if c not in shown_paper]

    header = ['row', 'method']
    for c in study.columns:
        header.append(metrics.METRICS[c.metric].header)
        if c.paper:
            header.append(f'paper: {c.paper}')
    if study.accuracy:
        header += ['kNN top-1 (%)', 'linear probe top-1 (%)'] + [h for h, _, _ in ft_columns]
        header += ['FT avg'] if with_avg else []
    header += [f'paper: {c}' for c in rest] + ['wall time (s)']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    data = {'study': study.name, 'scale': scale, 'source': study.source, 'rows': []}

    def paper_of(cells):
        return dict(zip(study.paper_columns, cells))

    def accuracy_cells(knn, probe, ft_values):
        out = [fmt(knn, 1), fmt(probe, 1)] + [fmt(v, 2) for v in ft_values]
        if with_avg:
            out.append(fmt(sum(ft_values) / len(ft_values), 2)
                       if all(v is not None for v in ft_values) else 'n/a')
        return out

    if study.scratch is not None:
        source = next((r for r in finished.values()
                       if metrics.random_encoder(r, 'knn_top1') is not None), None)
        knn = None if source is None else metrics.random_encoder(source, 'knn_top1')
        probe = None if source is None else metrics.random_encoder(source, 'linear_probe_top1')
        ft = next((f['scratch'] for f in finetune.values() if f['scratch']), None)
        ft_values = _finetune_cells(ft_columns, ft)
        paper = paper_of(study.scratch)
        cells = ['scratch (random encoder)', 'Scratch']
        for c in study.columns:
            cells += ['–'] + ([paper[c.paper]] if c.paper else [])
        if study.accuracy:
            cells += accuracy_cells(knn, probe, ft_values)
        cells += [paper[c] for c in rest] + ['–']
        lines.append('| ' + ' | '.join(cells) + ' |')
        data['scratch'] = {'knn': knn, 'probe': probe, 'finetune': ft, 'paper': paper}

    group = None
    for row in study.rows:
        if row.group != group:
            group = row.group
            if group:
                lines.append(f'| **{group}** |' + ' |' * (len(header) - 1))
        record = records.get(row.name)
        if scale not in row.scales:
            status = f'{"/".join(row.scales)} scale only'
        elif record is None:
            status = 'not run'
        elif not record.finished:
            status = f'unfinished, {len(record.rounds)} rounds logged'
        else:
            status = 'done'
        done = status == 'done'
        base = finished.get(row.baseline) if row.baseline else None
        paper = paper_of(row.paper)
        ours, ratios, cells = {}, {}, [row.name if done else f'{row.name} ({status})', row.label]
        for c in study.columns:
            value = metrics.METRICS[c.metric].read(record) if done else None
            ours[c.metric] = value
            r = ratio(value, metrics.METRICS[c.metric].read(base)) if c.ratio and base else None
            if c.ratio:
                ratios[c.metric] = r
            cells.append(fmt(value) + _ratio_text(r) if done else '')
            if c.paper:
                cells.append(paper[c.paper])
        ft = finetune.get(row.name, {}).get('pretrained')
        if study.accuracy:
            knn = metrics.METRICS['knn'].read(record) if done else None
            probe = metrics.METRICS['probe'].read(record) if done else None
            ours.update(knn=knn, probe=probe)
            acc = accuracy_cells(knn, probe, _finetune_cells(ft_columns, ft))
            cells += acc if done else [''] * len(acc)
        wall = metrics.METRICS['wall'].read(record) if done else None
        cells += [paper[c] for c in rest] + [fmt(wall, 0) if done else '']
        lines.append('| ' + ' | '.join(cells) + ' |')
        data['rows'].append({
            'name': row.name, 'label': row.label, 'group': row.group, 'status': status,
            'baseline': row.baseline, 'config': manifest['rows'].get(row.name),
            'ours': ours, 'ratios': ratios, 'finetune': ft, 'wall_time_s': wall,
            'paper': paper})

    text = [f'# {study.title}', '',
            f'Scale **{scale}**; the paper\'s numbers: {study.source}. Ours: resources per '
            'client as `summary.json` holds them (memory: XLA `memory_analysis` of one '
            'client step, max over stages; GFLOPs and "GB" in the paper\'s conventions), '
            'ratios to the row\'s baseline; accuracy of the final encoder on the run\'s '
            'own data (kNN, linear probe) and fine-tuning results where present.', '',
            *lines, '']
    text += [f'* {n}' for n in study.notes] + ([''] if study.notes else [])
    text += ['Configs (`python -m lwfedssl_jax.main --config ...` trains one row alone; '
             'every row also gets ' + ', '.join(f'`{k}={v}`' for k, v in
                                                RUN_OVERRIDES[scale]) + '):', '',
             '| row | config |', '|---|---|']
    text += [f'| {n} | `{s}` |' for n, s in manifest['rows'].items()]
    return '\n'.join(text) + '\n', data


def analyze(study: Study, workdir: str) -> dict:
    """Writes `<study>.md`, `<study>.json` and the figures under `workdir`.

    Returns:
      `{'markdown': str, 'data': dict, 'paths': [files written]}`.
    """
    markdown, data = build(study, workdir)
    paths = [os.path.join(workdir, f'{study.name}.md'),
             os.path.join(workdir, f'{study.name}.json')]
    with open(paths[0], 'w') as f:
        f.write(markdown)
    with open(paths[1], 'w') as f:
        json.dump(data, f, indent=1)
    records = read_records(study, workdir, data['scale'])
    rows = study.rows_at(data['scale'])
    for name in study.figures:
        if any(r is not None and r.finished for r in records.values()):
            path = os.path.join(workdir, f'{study.name}_{name}.png')
            figures.FIGURES[name](rows, records, path)
            paths.append(path)
    return {'markdown': markdown, 'data': data, 'paths': paths}
