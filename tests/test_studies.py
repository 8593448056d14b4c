"""The paper studies (experiments/<study>/): every study's commands at smoke
scale, end to end (parametrised over the registry, so a new study is tested
without editing this file), and the pieces the commands rely on.

All studies share one workdir, as experiments/README.md suggests: a row two
studies declare (same name, same config) trains once, which keeps this file
within a few minutes on 2 cores.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from experiments import analyze_study, run_study
from experiments.studylib import analysis, registry, runner, spec
from lwfedssl_jax.errors import RunDirError, UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    return str(tmp_path_factory.mktemp('studies'))


def _summary(workdir, row):
    with open(os.path.join(workdir, row, 'summary.json')) as f:
        return json.load(f)


def _last_round(workdir, row):
    with open(os.path.join(workdir, row, 'metrics.jsonl')) as f:
        return [json.loads(l) for l in f if '"kind": "round"' in l][-1]


# Each ratio metric read by hand from the run's own files (not via
# studylib.metrics), to check the table's ratios independently.
BY_HAND = {
    'memory': lambda w, r: _summary(w, r)['max_step_memory_bytes'],
    'gflops': lambda w, r: _summary(w, r)['resources']['paper_gflops'],
    'comm': lambda w, r: _summary(w, r)['resources']['comm_paper_gb'],
    'comm_worst': lambda w, r: _summary(w, r)['resources']['comm_worst_case_paper_gb'],
    'memory_last': lambda w, r: _summary(w, r)['stages'][-1]['step_memory_bytes'],
    'mb_round_last': lambda w, r: (_last_round(w, r)['bytes_down_per_client']
                                   + _last_round(w, r)['bytes_up_per_client']),
}


def _row_line(markdown: str, row: str) -> str:
    """The table line of `row` (named alone when it ran, else with a status)."""
    lines = markdown.splitlines()
    table = lines[4:lines.index('', 4)]   # the study table (a config table follows)
    hits = [l for l in table if l.startswith((f'| {row} |', f'| {row} ('))]
    assert len(hits) == 1, (row, hits)
    return hits[0]


@pytest.mark.parametrize('name', list(registry.STUDIES))
def test_study_runs_and_tabulates_at_smoke_scale(name, workdir):
    study = registry.get(name)
    done = run_study.main([name, '--scale', 'smoke', '--workdir', workdir])
    assert list(done) == list(study.smoke_rows)
    result = analyze_study.main([name, '--workdir', workdir])
    table, data = result['markdown'], result['data']

    # Every row of the paper is listed with the paper's cells beside ours.
    assert [r['name'] for r in data['rows']] == [r.name for r in study.rows]
    for row in study.rows:
        line = _row_line(table, row.name)
        for cell in row.paper:
            assert f'| {cell} |' in line, (row.name, cell)
    status = {r['name']: r['status'] for r in data['rows']}
    assert all(status[n] == 'done' for n in study.smoke_rows)

    # Ratios to the baseline, recomputed from the summaries by hand.
    checked = 0
    for row in study.rows:
        if row.name not in study.smoke_rows or row.baseline not in study.smoke_rows:
            continue
        line = _row_line(table, row.name)
        for column in (c for c in study.columns if c.ratio):
            expected = (BY_HAND[column.metric](workdir, row.name)
                        / BY_HAND[column.metric](workdir, row.baseline))
            ours = next(r for r in data['rows'] if r['name'] == row.name)['ratios']
            assert ours[column.metric] == pytest.approx(expected, rel=1e-9)
            assert f'({expected:.2f}x)' in line
            checked += 1
    if any(c.ratio for c in study.columns):
        assert checked, 'no smoke row has its baseline among the smoke rows'

    # Accuracy columns come from the summaries' final evaluation.
    if study.accuracy:
        for row in study.smoke_rows:
            knn = _summary(workdir, row)['final_eval']['knn_top1']
            assert f'| {knn:.1f} |' in _row_line(table, row)
    for figure in study.figures:
        assert os.path.getsize(os.path.join(workdir, f'{name}_{figure}.png')) > 1000


def test_rerun_skips_finished_rows_and_refuses_another_config(workdir):
    study = registry.get('table5')
    run_study.main(['table5', '--scale', 'smoke', '--workdir', workdir])   # trains if alone
    assert set(run_study.main(['table5', '--workdir', workdir]).values()) == {'skipped'}
    with pytest.raises(RunDirError, match='fl.local_epochs'):
        runner.run(study, 'smoke', workdir, 'fedmocov3', sets=[('fl.local_epochs', '2')])


def test_finetune_results_join_the_table(workdir, tmp_path):
    run_study.main(['table5', '--scale', 'smoke', '--workdir', workdir])
    for row in ('fedmocov3', 'lw_mocov3', 'prog_mocov3'):
        shutil.copytree(os.path.join(workdir, row), tmp_path / row)
    runner.run(registry.get('table2'), 'smoke', str(tmp_path))   # skips: all finished
    evals = tmp_path / 'fedmocov3' / 'eval'
    evals.mkdir()

    def write(name, step, scratch, results):
        (evals / name).write_text(json.dumps({'protocols': ['finetune'], 'scratch': scratch,
                                              'step': step, 'results': results}))
    write('finetune_step1.json', 1, False, {'tfds:cifar10': {'finetune_top1': 10.0}})
    write('finetune_step2.json', 2, False, {
        'tfds:cifar10': {'finetune_top1': 81.2, 'finetune_macro_f1': 80.0}})
    write('knn+finetune_step2.json', 2, False, {   # another dataset, same step: both kept
        'tfds:caltech101': {'finetune_top1': 55.0, 'finetune_mean_per_class': 47.6}})
    write('finetune_scratch_step2.json', 2, True, {'tfds:cifar10': {'finetune_top1': 33.3}})
    (evals / 'knn_step2.json').write_text(json.dumps({   # no fine-tuning: ignored
        'protocols': ['knn'], 'scratch': False, 'step': 2,
        'results': {'tfds:cifar10': {'finetune_top1': 99.9}}}))

    table = analysis.analyze(registry.get('table2'), str(tmp_path))['markdown']
    header = table.splitlines()[4]
    assert '| FT cifar10 top1 | FT caltech101 mean_per_class | FT avg |' in header
    assert '| 81.20 | 47.60 | 64.40 |' in _row_line(table, 'fedmocov3')   # latest step
    assert '| 33.30 | n/a | n/a |' in _row_line(table, 'scratch')
    assert '| n/a | n/a | n/a |' in _row_line(table, 'lw_mocov3')


def test_rows_of_the_same_name_build_the_same_config():
    """Studies share row directories by name: every declaration of a name
    must build one config at every scale (built only, nothing trained)."""
    for scale in spec.SCALE_NAMES:
        seen = {}
        for study in registry.STUDIES.values():
            for row in study.rows_at(scale):
                _, config = runner.row_config(row, scale, data_dir='/data/medmnist')
                text = config.to_json()
                first = seen.setdefault(row.name, (study.name, text))
                assert first[1] == text, (scale, row.name, first[0], study.name)


def test_every_study_has_a_folder_with_its_readme():
    for name in registry.STUDIES:
        for f in ('study.py', 'README.md'):
            assert os.path.isfile(os.path.join(ROOT, 'experiments', name, f)), (name, f)


@pytest.mark.parametrize('argv, match', [
    (['table99', '--workdir', 'x'], "unknown study 'table99'; choices: table2, table3"),
    (['table2', '--scale', 'gpu', '--workdir', 'x'], "unknown scale 'gpu'; choices: smoke"),
    (['table2', '--rows', 'lw', '--workdir', 'x'], "unknown row 'lw' of study table2; "
                                                   'choices: centralized_mocov3'),
    (['table3', '--rows', 'lw_mocov3_bps3', '--workdir', 'x'],
     "'lw_mocov3_bps3' of study table3 exists only at scale.s. paper"),
    (['table9', '--scale', 'cpu', '--workdir', 'x'], 'give --data-dir'),
])
def test_mistakes_are_named_with_the_choices(argv, match):
    with pytest.raises(UserError, match=match):
        run_study.main(argv)


def test_command_line_errors_are_one_line_with_status_2():
    proc = subprocess.run([sys.executable, '-m', 'experiments.analyze_study', 'fig9',
                           '--workdir', 'x'], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: unknown study 'fig9'; choices: {', '.join(registry.STUDIES)}"]
