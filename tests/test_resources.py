"""The compile-only resource report equals what a training run logs."""

import json
import os
import subprocess
import sys

import numpy as np

from configs import quickstart
from lwfedssl_jax import resources, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config(mode):
    c = quickstart.get_config(f'mode={mode},smoke=True')
    c.fl.total_rounds = 4
    c.fl.clients_per_round = 2       # partial participation: sampling must match too
    c.data.partition = 'dirichlet'   # ragged clients: per-client step counts differ
    c.data.dirichlet_alpha = 1.0
    c.log.step_flops = 'every_stage'
    c.eval.at_stage_end = False
    return c


def test_training_logs_exactly_the_predicted_resources(tmp_path):
    for mode in ('layerwise', 'progressive'):
        summary = train.run(config(mode), str(tmp_path / mode))
        predicted = resources.predict(config(mode))
        assert summary['resources'] == predicted['resources']
        assert summary['max_step_memory_bytes'] == predicted['max_step_memory_bytes']
        logged = [json.loads(l) for l in open(tmp_path / mode / 'metrics.jsonl')]
        logged = [l for l in logged if l['kind'] == 'round']
        assert len(logged) == len(predicted['per_round']) == 4
        for got, want in zip(logged, predicted['per_round']):
            for key in ('bytes_down', 'bytes_down_worst_case', 'bytes_up',
                        'paper_flops', 'xla_flops'):
                assert got[f'{key}_per_client'] == want[key], key
        assert logged[-1]['cumulative'] == summary['resources']


def test_layerwise_step_memory_and_flops_below_e2e():
    reports = {m: resources.predict(config(m)) for m in ('e2e', 'layerwise', 'progressive')}
    mem = {m: r['max_step_memory_bytes'] for m, r in reports.items()}
    assert mem['layerwise'] < mem['e2e']
    # Progressive's last stage trains everything: its peak is e2e's.
    assert abs(mem['progressive'] / mem['e2e'] - 1) < 0.05
    last = {m: r['stages'][-1]['step_flops'] for m, r in reports.items()}
    assert last['layerwise'] < last['e2e']
    assert np.isclose(last['progressive'], last['e2e'], rtol=1e-6)


def test_resources_cli_writes_table_and_plots(tmp_path):
    out = subprocess.run(
        [sys.executable, '-m', 'lwfedssl_jax.resources', '--config',
         'configs/quickstart.py:smoke=True', f'--config.accounting.outdir={tmp_path}'],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert '| layerwise, worst-case download (Table 5) |' in out.stdout
    for name in ('resources.png', 'comm_per_round.png', 'resources.json', 'resources.md'):
        assert os.path.getsize(tmp_path / name) > 0
