"""Quickstart: e2e vs layer-wise vs progressive federated MoCo v3, one table.

    python -m lwfedssl_jax.quickstart
    python -m lwfedssl_jax.quickstart --config configs/quickstart.py:method=byol --workdir runs/qs_byol
    python -m lwfedssl_jax.compare runs/quickstart/e2e runs/quickstart/layerwise runs/quickstart/progressive

Trains the three modes of `configs/quickstart.py` (digits, bundled with
scikit-learn: no download) one after the other and prints kNN and
linear-probe accuracy (with a randomly initialised encoder as the baseline
row), parameters trained per round, bytes exchanged per client, and XLA
FLOPs of one client step at the last stage, each with its ratio to e2e.
"""

import copy
import os

from absl import flags
from ml_collections import config_flags

from lwfedssl_jax import cli, platform, train, validation

MODES = ('e2e', 'layerwise', 'progressive')


def format_table(summaries: dict) -> str:
    """Markdown table of the runs; ratios are to the e2e row."""
    base = summaries['e2e']
    head = ('| encoder | kNN top-1 % | linear probe top-1 % | trained params / round '
            '| exchanged per client (MB, down+up, whole run) | client-step MFLOPs '
            '(last stage) |\n|---|---|---|---|---|---|\n')
    rows = []
    rand = base.get('random_encoder_eval')
    if rand:
        rows.append(f'| random init (no training) | {rand["knn_top1"]:.1f} | '
                    f'{rand["linear_probe_top1"]:.1f} | - | - | - |')

    def ratio(s, key):
        return f'{s[key] / base[key]:.2f}x' if base[key] else 'n/a'

    for mode, s in summaries.items():
        comm = s['resources']['bytes_down'] + s['resources']['bytes_up']
        base_comm = base['resources']['bytes_down'] + base['resources']['bytes_up']
        flops = s.get('last_stage_step_flops')
        flops_cell = (f'{flops / 1e6:.1f} ({flops / base["last_stage_step_flops"]:.2f}x)'
                      if flops and base.get('last_stage_step_flops') else 'n/a')
        rows.append(
            f'| {mode} | {s["final_eval"]["knn_top1"]:.1f} | '
            f'{s["final_eval"]["linear_probe_top1"]:.1f} | '
            f'{s["max_trained_params_per_round"]:,} '
            f'({ratio(s, "max_trained_params_per_round")}) | '
            f'{comm / 2**20:.2f} ({comm / base_comm:.2f}x) | {flops_cell} |')
    return head + '\n'.join(rows) + '\n'


def mode_configs(config) -> dict:
    """`{mode: config}` of the three runs (the random baseline only in the first)."""
    configs = {}
    for i, mode in enumerate(MODES):
        configs[mode] = copy.deepcopy(config)
        configs[mode].mode = mode
        configs[mode].eval.random_baseline = config.eval.random_baseline and i == 0
    return configs


def main(argv):
    cli.no_positional_args(argv)
    platform.setup()
    configs = mode_configs(_CONFIG.value)
    for config in configs.values():   # all three before the first trains
        validation.check_config(config)
    validation.check_workdir(_WORKDIR.value)
    summaries = {}
    for mode, config in configs.items():
        print(f'\n=== {mode} ===', flush=True)
        summary = train.run(config, os.path.join(_WORKDIR.value, mode))
        summary.pop('params')
        summaries[mode] = summary
    table = format_table(summaries)
    with open(os.path.join(_WORKDIR.value, 'table.md'), 'w') as f:
        f.write(table)
    total = sum(s['wall_time_s'] for s in summaries.values())
    print(f'\nQuickstart ({total:.0f} s of training + evaluation):\n\n{table}')
    print('Table written to', os.path.join(_WORKDIR.value, 'table.md'))
    print('Curves side by side: python -m lwfedssl_jax.compare '
          + ' '.join(os.path.join(_WORKDIR.value, m) for m in MODES))


def _define_flags():
    """Command-line flags (defined only when run as a program, so that the
    module can be imported beside other entry points)."""
    global _CONFIG, _WORKDIR
    _CONFIG = config_flags.DEFINE_config_file(
        'config', None, 'Config of the three runs (default: configs/quickstart.py).',
        lock_config=True)
    _WORKDIR = flags.DEFINE_string('workdir', 'runs/quickstart', 'Output directory.')


if __name__ == '__main__':
    _define_flags()
    cli.run(main, default_config='configs/quickstart.py')
