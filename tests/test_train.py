"""End-to-end runs of the training loop (quickstart:smoke, synthetic data)."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import quickstart
from lwfedssl_jax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def smoke(mode, **overrides):
    c = quickstart.get_config(f'mode={mode},smoke=True')
    for key, value in overrides.items():
        obj = c
        *path, last = key.split('.')
        for p in path:
            obj = obj[p]
        obj[last] = value
    return c


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """One smoke run per mode; layerwise also records params per stage."""
    out = {}
    for mode in ('e2e', 'layerwise', 'progressive'):
        snaps = []
        workdir = str(tmp_path_factory.mktemp(mode))
        summary = train.run(smoke(mode, **{'fl.total_rounds': 4}), workdir,
                            on_stage_end=lambda spec, p: snaps.append(
                                (spec, jax.tree.map(np.asarray, p))))
        out[mode] = (summary, snaps, workdir)
    return out


def test_outputs_written(runs):
    summary, _, workdir = runs['layerwise']
    assert set(os.listdir(workdir)) >= {'config.json', 'metrics.jsonl', 'summary.json'}
    lines = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]
    rounds = [l for l in lines if l['kind'] == 'round']
    assert [r['global_round'] for r in rounds] == [0, 1, 2, 3]
    assert all(np.isfinite(r['loss']) for r in rounds)
    saved = json.load(open(os.path.join(workdir, 'summary.json')))
    assert saved['final_eval'] == summary['final_eval']
    assert json.load(open(os.path.join(workdir, 'config.json')))['mode'] == 'layerwise'


def test_frozen_blocks_bit_identical_after_their_stage(runs):
    _, snaps, _ = runs['layerwise']
    (s0, p0), (s1, p1) = snaps
    assert s1.frozen == ('embed', 'block_00')
    for part in s1.frozen:   # trained in stage 0, frozen through stage 1
        jax.tree.map(np.testing.assert_array_equal, p0[part], p1[part])
    for part in s1.trainable:
        if part in p0:       # heads and norm keep training
            assert not np.array_equal(jax.tree.leaves(p0[part])[0],
                                      jax.tree.leaves(p1[part])[0])


def test_one_trace_per_stage(runs):
    for summary, _, _ in runs.values():
        assert [r['round_fn_traces'] for r in summary['stages']] == [1] * len(summary['stages'])


def test_layerwise_exchanges_and_trains_less_than_e2e(runs):
    e2e, lw, prog = (runs[m][0] for m in ('e2e', 'layerwise', 'progressive'))
    comm = lambda s: s['resources']['bytes_down'] + s['resources']['bytes_up']
    assert comm(lw) < comm(prog) < comm(e2e)
    assert lw['max_trained_params_per_round'] < e2e['max_trained_params_per_round']
    # Bytes per round = 4 bytes x exchanged params, down and up alike.
    for s in (e2e, lw, prog):
        assert s['resources']['bytes_down'] == s['resources']['bytes_up'] == sum(
            4 * r['exchanged_params'] * r['rounds'] for r in s['stages'])


def test_same_config_same_numbers(runs, tmp_path):
    summary, _, _ = runs['progressive']
    again = train.run(smoke('progressive', **{'fl.total_rounds': 4}), str(tmp_path))
    assert again['final_eval'] == summary['final_eval']
    jax.tree.map(np.testing.assert_array_equal, again['params'], summary['params'])


def test_bad_config_values_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match='clients_per_round'):
        train.run(smoke('e2e', **{'fl.clients_per_round': 9}), str(tmp_path))
    with pytest.raises(ValueError, match=r'must divide the \d+ blocks'):
        train.run(smoke('layerwise', blocks_per_stage=3), str(tmp_path))
    with pytest.raises(ValueError, match='Unknown config argument'):
        quickstart.get_config('mdoe=e2e')


def _cli(*args):
    return subprocess.run([sys.executable, '-m', 'lwfedssl_jax.main', *args],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


def test_cli_runs_and_rejects_unknown_keys(tmp_path):
    ok = _cli('--config', 'configs/quickstart.py:mode=e2e,smoke=True',
              '--workdir', str(tmp_path / 'run'), '--config.fl.total_rounds=1')
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert 'done in' in ok.stdout
    assert os.path.exists(tmp_path / 'run' / 'summary.json')
    bad = _cli('--config', 'configs/quickstart.py:smoke=True', '--workdir',
               str(tmp_path / 'bad'), '--config.fl.no_such_key=3')
    assert bad.returncode != 0 and 'no_such_key' in bad.stderr


def test_quickstart_prints_the_comparison_table(tmp_path):
    out = subprocess.run(
        [sys.executable, '-m', 'lwfedssl_jax.quickstart', '--config',
         'configs/quickstart.py:smoke=True', '--workdir', str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    table = (tmp_path / 'table.md').read_text()
    assert table in out.stdout
    rows = {line.split('|')[1].strip(): line for line in table.splitlines()[2:]}
    assert set(rows) == {'e2e', 'layerwise', 'progressive'}   # smoke: no random row
    assert '(1.00x)' in rows['e2e'] and '(1.00x)' not in rows['layerwise']
