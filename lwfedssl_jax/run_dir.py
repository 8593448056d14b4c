"""Read access to a finished or running run directory (config + checkpoints).

Shared by `evaluate` and `export`: rebuilds the run's config from its
`config.json`, opens its checkpoints read-only and restores one step.
"""

import json
import os

import ml_collections
import numpy as np
from absl import logging

from lwfedssl_jax import builders, run_state, validation
from lwfedssl_jax.checkpoints import ADDED_KEYS, RunCheckpoints
from lwfedssl_jax.errors import ConfigError, RunDirError


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The run's config, as saved in `<workdir>/config.json`."""
    validation.check_run_dir(workdir)
    with open(os.path.join(workdir, 'config.json')) as f:
        saved = json.load(f)
    if 'name' not in saved.get('model', {}):
        # Runs written before backbones were pluggable (a learned position
        # table and MoCo v3 heads of another shape): their checkpoints do not
        # fit today's model, and guessing would restore the wrong tree.
        raise RunDirError(f'--workdir={workdir!r} was written by an engine before '
                          'model.name existed (commit 47c40ad or earlier); evaluate or '
                          'export it with that version.')
    # Keys added since the run was saved take the values it ran with.
    for key, value in ADDED_KEYS.items():
        *groups, name = key.split('.')
        node = saved
        for group in groups:
            node = node.setdefault(group, {})
        node.setdefault(name, value)
    return ml_collections.ConfigDict(saved)


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
    validation.check_config(config)
    setup = builders.build(config)
    ends = np.cumsum([s.rounds for s in setup.plan]).tolist()
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)   # orbax warns that read-only is read-only
    try:
        ckpt = RunCheckpoints(workdir, keep=config.checkpoint.keep, stage_end_steps=ends,
                              read_only=True)
    finally:
        logging.set_verbosity(verbosity)
    abstract = lambda meta: run_state.abstract_params(setup, config, meta['stage'])
    try:
        if step is None:
            found = ckpt.restore_latest(abstract)
            if found is None:
                raise RunDirError(f'--workdir={workdir!r}: no checkpoints in '
                                  f'{ckpt.directory} yet.')
            step, params, _, meta = found
        else:
            if step not in ckpt.all_steps():
                raise ConfigError('--step', step, f'no checkpoint at that step in '
                                  f'{ckpt.directory}; available: {ckpt.all_steps()}.')
            params, _, meta = ckpt.restore(step, abstract)
    finally:
        ckpt.close()
    return config, setup, step, params, meta
