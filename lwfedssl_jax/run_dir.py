"""Read access to a finished or running run directory (config + checkpoints).

Shared by `evaluate` and `export`: rebuilds the run's config from its
`config.json`, opens its checkpoints read-only and restores one step.
"""

import json
import os

import ml_collections
import numpy as np

from lwfedssl_jax import builders, train
from lwfedssl_jax.checkpoints import RunCheckpoints


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The run's config, as saved in `<workdir>/config.json`."""
    path = os.path.join(workdir, 'config.json')
    if not os.path.exists(path):
        raise FileNotFoundError(f'{path} not found: is {workdir!r} a run directory '
                                '(python -m lwfedssl_jax.main --workdir ...)?')
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def restore(workdir: str, step: int | None = None):
    """Restores a checkpoint of a run directory.

    Args:
      workdir: the run directory.
      step: checkpoint step (completed rounds); None = the latest readable.

    Returns:
      `(config, setup, step, params, meta)`; `setup.plan[meta['stage']]`
      is the stage the parameters belong to.
    """
    config = load_config(workdir)
    setup = builders.build(config)
    ends = np.cumsum([s.rounds for s in setup.plan]).tolist()
    ckpt = RunCheckpoints(workdir, keep=config.checkpoint.keep, stage_end_steps=ends,
                          read_only=True)
    abstract = lambda meta: train.abstract_params(setup, config, meta['stage'])
    try:
        if step is None:
            found = ckpt.restore_latest(abstract)
            if found is None:
                raise FileNotFoundError(f'No checkpoints in {ckpt.directory}.')
            step, params, _, meta = found
        else:
            if step not in ckpt.all_steps():
                raise ValueError(f'No checkpoint at step {step} in {ckpt.directory}; '
                                 f'available: {ckpt.all_steps()}.')
            params, _, meta = ckpt.restore(step, abstract)
    finally:
        ckpt.close()
    return config, setup, step, params, meta
