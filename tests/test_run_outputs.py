"""What a run leaves for people to read: one plain line per round when the
output is not a terminal, TensorBoard events equal to metrics.jsonl, the
PNG plots, and `compare` on the run directories."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tb_events   # noqa: E402  (tests/tb_events.py)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = 4   # smoke: 2 stages x 2 rounds


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """A smoke run through the real entry point, stdout and stderr piped."""
    workdir = str(tmp_path_factory.mktemp('run'))
    proc = subprocess.run(
        [sys.executable, '-m', 'lwfedssl_jax.main', '--config',
         'configs/quickstart.py:smoke=1', '--config.log.progress=True',
         f'--config.fl.total_rounds={ROUNDS}', '--workdir', workdir],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir, proc


def _lines(workdir):
    return [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]


def test_one_plain_line_per_round_when_not_a_terminal(run):
    workdir, proc = run
    assert '\r' not in proc.stdout + proc.stderr
    rounds = [l for l in proc.stderr.splitlines() if ' round ' in l]
    losses = [l['loss'] for l in _lines(workdir) if l['kind'] == 'round']
    assert rounds == [
        f'[lwfedssl] stage {s + 1}/2 round {r + 1}/2: loss {losses[2 * s + r]:.4f}, '
        + rounds[2 * s + r].split(', ', 1)[1] for s in range(2) for r in range(2)]


def test_tensorboard_holds_the_logged_metrics(run):
    workdir, _ = run
    scalars, images = tb_events.read(workdir)
    lines = _lines(workdir)
    rounds = [l for l in lines if l['kind'] == 'round']
    expect = {
        'train/loss': [l['loss'] for l in rounds],
        'comm/bytes_down_per_client': [l['bytes_down_per_client'] for l in rounds],
        'comm/bytes_up_per_client': [l['bytes_up_per_client'] for l in rounds],
        'comm/cumulative_paper_gb_per_client': [l['cumulative']['comm_paper_gb']
                                                for l in rounds],
        'compute/cumulative_paper_gflops_per_client': [l['cumulative']['paper_gflops']
                                                       for l in rounds],
        'time/round_s': [l['round_time_s'] for l in rounds],
    }
    for tag, values in expect.items():
        assert sorted(scalars[tag]) == list(range(1, ROUNDS + 1)), tag
        np.testing.assert_allclose([scalars[tag][s] for s in range(1, ROUNDS + 1)],
                                   values, rtol=1e-6, err_msg=tag)
    evals = [l for l in lines if l['kind'] == 'stage_eval']
    assert scalars['eval/knn_top1'] == pytest.approx(
        {l['step']: l['knn_top1'] for l in evals})
    final = [l for l in lines if l['kind'] == 'final_eval'][0]
    assert scalars['final/linear_probe_top1'] == pytest.approx(
        {ROUNDS: final['linear_probe_top1']})
    # Image rows: originals, view 1, view 2 of 8 images of 16 px, 1-px
    # borders, zoomed 4x; at each stage's first round.
    assert images == {'augment/stage_1': {1: (3 * 18 * 4, 8 * 18 * 4)},
                      'augment/stage_2': {3: (3 * 18 * 4, 8 * 18 * 4)}}


def test_plots_are_written(run):
    workdir, _ = run
    for name in ('loss', 'accuracy', 'communication', 'divergence'):
        with open(os.path.join(workdir, 'plots', f'{name}.png'), 'rb') as f:
            data = f.read()
        assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 10_000, name


def test_compare_reads_the_run(run, tmp_path):
    workdir, _ = run
    proc = subprocess.run([sys.executable, '-m', 'lwfedssl_jax.compare', workdir, workdir,
                           '--out', str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.load(open(os.path.join(workdir, 'summary.json')))
    rows = [l for l in proc.stdout.splitlines() if l.startswith('| ') and 'layerwise' in l]
    assert len(rows) == 2
    assert f'{summary["final_eval"]["knn_top1"]:.1f}' in rows[0]
    assert os.path.exists(tmp_path / 'compare.md')


def test_partition_report(run):
    workdir, _ = run
    report = json.load(open(os.path.join(workdir, 'partition.json')))
    summary = json.load(open(os.path.join(workdir, 'summary.json')))
    assert report['hash'] == summary['partition_hash'] and len(report['hash']) == 64
    hist = np.asarray(report['label_histogram'])
    assert hist.shape == (3, 10)                       # smoke: 3 clients, 10 classes
    assert hist.sum(axis=1).tolist() == report['sizes'] == [32, 32, 32]
    with open(os.path.join(workdir, 'plots', 'partition.png'), 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
