"""Entry point: `python -m lwfedssl_jax.main --config CFG.py[:args] --workdir DIR`.

Single keys are overridden with `--config.fl.batch_size=64`; unknown keys are
rejected (the config is locked). Kept short on purpose: all logic is in
`train.run`.
"""

from absl import app, flags
from ml_collections import config_flags

from lwfedssl_jax import platform, train


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    platform.setup()
    summary = train.run(_CONFIG.value, _WORKDIR.value)
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
    app.run(main)
