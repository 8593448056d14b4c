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

Several processes (hosts, GPUs) train one run together through JAX's
distributed runtime: start the same command in each with
`--coordinator_address=HOST0:PORT --num_processes=P --process_id=I` (or
`--distributed` where JAX detects the cluster: Cloud TPU, SLURM) and
`--config.fl.mesh_devices=-1` (README, "Several hosts").

A mistake in the config or flags is answered in one line, exit status 2,
before any data is loaded or anything compiled (`--debug` shows the
traceback).
"""

from absl import flags
from ml_collections import config_flags

from lwfedssl_jax import cli, distributed, platform, train


def main(argv):
    cli.no_positional_args(argv)
    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                           _DISTRIBUTED.value)   # before anything touches a device
    platform.setup()
    summary = train.run(_CONFIG.value, _WORKDIR.value)   # validates first thing
    final = summary['final_eval']
    print(f'[lwfedssl] done in {summary["wall_time_s"]:.0f} s: '
          + ', '.join(f'{k}={v:.2f}' for k, v in final.items())
          + f'; outputs in {_WORKDIR.value}')


def _define_flags():
    """Command-line flags (defined only when run as a program, so that the
    module can be imported beside other entry points)."""
    global _CONFIG, _WORKDIR, _COORDINATOR, _NUM_PROCESSES, _PROCESS_ID, _DISTRIBUTED
    _CONFIG = config_flags.DEFINE_config_file(
        'config', None, 'Config file, e.g. configs/quickstart.py:mode=layerwise.',
        lock_config=True)
    _WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory.')
    _COORDINATOR = flags.DEFINE_string(
        'coordinator_address', None, "Multi-process run: 'host:port' of process 0.")
    _NUM_PROCESSES = flags.DEFINE_integer(
        'num_processes', None, 'Multi-process run: how many processes take part.')
    _PROCESS_ID = flags.DEFINE_integer(
        'process_id', None, "Multi-process run: this process's rank, 0 .. P-1.")
    _DISTRIBUTED = flags.DEFINE_bool(
        'distributed', False, 'Multi-process run on a cluster JAX detects itself '
        '(Cloud TPU pod slice, SLURM).')
    flags.mark_flags_as_required(['config', 'workdir'])


if __name__ == '__main__':
    _define_flags()
    cli.run(main)
