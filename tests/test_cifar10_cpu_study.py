"""The CPU-scale main study's analysis (experiments/cifar10_cpu/analyze.py)
on run folders written here, checked against hand-computed cells."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write(path, payload):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(payload, f)


def _runs(tmp_path):
    runs = tmp_path / 'runs'
    probe = {('e2e', 0): 50.0, ('e2e', 1): 52.0, ('layerwise', 0): 47.0,
             ('layerwise', 1): 48.0, ('progressive', 0): 53.0}
    for (mode, seed), value in probe.items():
        run = runs / f'{mode}_s{seed}'
        _write(run / 'summary.json', {
            'final_eval': {'knn_top1': value - 5, 'linear_probe_top1': value},
            'random_encoder_eval': {'knn_top1': 30.0 + seed, 'linear_probe_top1': 38.0},
            'wall_time_s': 600.0 * (1 + (mode == 'e2e'))})
        _write(run / 'eval' / 'finetune_step48.json', {
            'results': {'folder:/x': {'finetune_top1': value + 10, 'finetune_macro_f1': 1.0}}})
        # An older step must not be read.
        _write(run / 'eval' / 'finetune_step8.json', {
            'results': {'folder:/x': {'finetune_top1': 0.0, 'finetune_macro_f1': 0.0}}})
    _write(runs / 'e2e_s0' / 'eval' / 'finetune_scratch_step48.json', {
        'results': {'folder:/x': {'finetune_top1': 40.0, 'finetune_macro_f1': 2.0}}})
    return runs


def test_table_cells_are_means_over_seeds_and_differences_to_e2e(tmp_path):
    out = tmp_path / 'out'
    subprocess.run([sys.executable, os.path.join(ROOT, 'experiments', 'cifar10_cpu',
                                                 'analyze.py'),
                    '--runs', str(_runs(tmp_path)), '--out', str(out)],
                   check=True, capture_output=True, cwd=ROOT)
    rows = {line.split(' | ')[0].strip('| '): line.split(' | ')
            for line in (out / 'table.md').read_text().splitlines() if line.startswith('| ')}
    # e2e: probe (50 + 52) / 2 = 51.0, fine-tune 61.0; wall 1200 s = 20.0 min.
    assert rows['e2e'][2] == '51.0 (50.0 / 52.0)'
    assert rows['e2e'][3] == '61.0 (60.0 / 62.0)'
    assert rows['e2e'][-1].strip(' |') == '20.0'
    # layer-wise: 47.5 - 51.0 = -3.5 points of probe and of fine-tuning.
    assert rows['layerwise'][5] == '-3.5' and rows['layerwise'][6] == '-3.5'
    # progressive (one seed): 53.0 - 51.0.
    assert rows['progressive'][5] == '+2.0'
    # Random encoder from the e2e runs (kNN 30, 31), Scratch from its file.
    assert rows['random encoder'][1] == '30.5 (30.0 / 31.0)'
    assert rows['scratch'][3] == '40.0 (40.0)'
    assert (out / 'accuracy.png').stat().st_size > 0
