"""Train one federated SSL run.

    python -m lwfedssl_jax.main --config configs/quickstart.py:mode=layerwise --workdir runs/qs_lw
    python -m lwfedssl_jax.main --config configs/table2.py:row=fedema --workdir runs/t2_fedema
    python -m lwfedssl_jax.main --config configs/cifar10_vit_tiny.py:mode=progressive \\
        --config.data.data_dir=$HOME/tensorflow_datasets --workdir runs/c10_prog

`--config FILE.py:arg=value,...` picks a config and its variant; any key is
overridden with `--config.a.b=value` (every key and its default:
configs/common.py). Rerunning the same command resumes from the last
checkpoint. Outputs in the workdir: config.json, metrics.jsonl,
summary.json, plots/*.png, tensorboard/ (`tensorboard --logdir WORKDIR`).
Compare runs with `python -m lwfedssl_jax.compare DIR...`.

A mistake in the config or flags is answered in one line, exit status 2,
before any data is loaded or anything compiled (`--debug` shows the
traceback).
"""

from absl import flags
from ml_collections import config_flags

from lwfedssl_jax import cli, platform, train


def main(argv):
    cli.no_positional_args(argv)
    platform.setup()
    summary = train.run(_CONFIG.value, _WORKDIR.value)   # validates first thing
    final = summary['final_eval']
    print(f'[lwfedssl] done in {summary["wall_time_s"]:.0f} s: '
          + ', '.join(f'{k}={v:.2f}' for k, v in final.items())
          + f'; outputs in {_WORKDIR.value}')


def _define_flags():
    """Command-line flags (defined only when run as a program, so that the
    module can be imported beside other entry points)."""
    global _CONFIG, _WORKDIR
    _CONFIG = config_flags.DEFINE_config_file(
        'config', None, 'Config file, e.g. configs/quickstart.py:mode=layerwise.',
        lock_config=True)
    _WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory.')
    flags.mark_flags_as_required(['config', 'workdir'])


if __name__ == '__main__':
    _define_flags()
    cli.run(main)
