"""Evaluate any saved checkpoint of a run.

    python -m lwfedssl_jax.evaluate --workdir runs/qs_lw
    python -m lwfedssl_jax.evaluate --workdir runs/qs_lw --step 8

Restores the encoder of step N (default: the latest readable checkpoint),
runs the kNN monitor and the linear probe of the run's own config on its
dataset, prints the result and writes `<workdir>/eval_step<N>.json`.
"""

import json
import os

from absl import flags

from lwfedssl_jax import builders, cli, platform, run_dir, train
from lwfedssl_jax.evaluation.monitor import evaluate_encoder


def evaluate_checkpoint(workdir: str, step: int | None = None) -> dict:
    """kNN / linear-probe accuracy of a checkpoint's encoder (present blocks)."""
    config, setup, step, params, meta = run_dir.restore(workdir, step)
    dataset = builders.load_data(config)[0]
    num_blocks = setup.plan[meta['stage']].num_blocks
    result = {'step': step, 'stage': meta['stage'], 'num_blocks': num_blocks,
              **evaluate_encoder(setup.encoder, params, num_blocks, dataset,
                                 **train.eval_kwargs(config))}
    with open(os.path.join(workdir, f'eval_step{step}.json'), 'w') as f:
        json.dump(result, f, indent=2)
    return result


def main(argv):
    cli.no_positional_args(argv)
    platform.setup()
    result = evaluate_checkpoint(_WORKDIR.value, _STEP.value)
    print(json.dumps(result, indent=2))


def _define_flags():
    """Command-line flags (defined only when run as a program, so that the
    module can be imported beside other entry points)."""
    global _WORKDIR, _STEP
    _WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory.', required=True)
    _STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).')


if __name__ == '__main__':
    _define_flags()
    cli.run(main)
