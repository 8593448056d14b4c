"""Where a run stands (`RunState`), and how it is saved to and restored from
its checkpoints (`checkpoints.RunCheckpoints`, orbax): the training loop's
resumable state, kept apart from the loop itself (`train.py`).

A checkpoint holds the server's present parts, the stage's round state
mid-stage (None at a stage end), and the metadata that places it: stage,
next round, completed rounds, the resource tally, the completed stages'
rows, the frozen-prefix parts each client holds, and the client sizes (a
changed partition refuses to resume).
"""

import dataclasses
import json
import os
from typing import NamedTuple

import jax
import numpy as np

from lwfedssl_jax import builders, distributed, sharding
from lwfedssl_jax.accounting.tally import ResourceTally
from lwfedssl_jax.checkpoints import RunCheckpoints, check_resume_config
from lwfedssl_jax.errors import RunDirError
from lwfedssl_jax.writers import RunWriter


class RunState(NamedTuple):
    """Where a run stands: the resumable state a checkpoint holds."""
    params: dict          # the server's present parts
    round_state: object   # the stage's RoundState mid-stage; None between stages
    stage: int            # current stage index
    next_round: int       # next round within `stage` (== rounds: stage done)
    global_round: int     # completed rounds so far (= checkpoint step)
    tally: ResourceTally
    stage_rows: list      # rows of completed stages
    held: tuple = ()      # [N] frozen-prefix parts each client holds (catch-up)


def open_checkpoints(config, setup, workdir):
    """The run's `RunCheckpoints` (None when `checkpoint.enabled` is off),
    after checking that a saved run's config may resume under `config`."""
    if not config.checkpoint.enabled:
        return None
    ends = np.cumsum([s.rounds for s in setup.plan]).tolist()
    ckpt = RunCheckpoints(workdir, keep=config.checkpoint.keep, stage_end_steps=ends)
    saved = os.path.join(workdir, 'config.json')
    if ckpt.all_steps() and os.path.exists(saved):
        with open(saved) as f:
            check_resume_config(json.load(f), json.loads(config.to_json()),
                                config.checkpoint.allow_safe_changes)
    return ckpt


def abstract_params(setup, config, stage: int) -> dict:
    """Parameter shapes of the server state during `stage`."""
    params = {}
    for spec in setup.plan[:stage + 1]:
        params = jax.eval_shape(
            lambda p, s=spec: builders.init_new_parts(setup, p, s, config.seed), params)
    return params


def abstract_round_state(setup, config, stage: int, fed):
    """Shapes of the round state during `stage` (see `federated/round.py`)."""
    spec = setup.plan[stage]
    fns = builders.build_stage(setup, spec, config, fed.num_clients, fed.max_examples)
    return jax.eval_shape(
        lambda p: builders.init_round_state(setup, fns, spec, p, fed.num_clients),
        abstract_params(setup, config, stage))


def restore_or_start(setup, config, workdir, ckpt, fed, mesh) -> RunState:
    """The latest readable checkpoint's state, or a fresh start."""
    metrics = os.path.join(workdir, 'metrics.jsonl')
    primary = distributed.is_primary()   # the one process that writes files
    restored = None if ckpt is None else ckpt.restore_latest(
        lambda meta: sharding.abstract_replicated(
            abstract_params(setup, config, meta['stage']), mesh),
        lambda meta: sharding.abstract_replicated(
            abstract_round_state(setup, config, meta['stage'], fed), mesh))
    if restored is None:
        if primary and os.path.exists(metrics):
            os.remove(metrics)   # a fresh start: stale lines would mislead
        return RunState({}, None, 0, 0, 0, ResourceTally(), [], (0,) * fed.num_clients)
    step, params, round_state, meta = restored
    if meta['client_sizes'] != np.asarray(fed.sizes).tolist():
        raise RunDirError(f'Cannot resume in {workdir}: the client partition differs '
                          "from the checkpoint's (data or partition settings changed); "
                          'use a new --workdir.')
    stage, next_round = meta['stage'], meta['next_round']
    if next_round == setup.plan[stage].rounds:        # a stage-end checkpoint
        stage, next_round, round_state = stage + 1, 0, None
    if primary:
        RunWriter.truncate_metrics(metrics, step)     # drop lines past the checkpoint
    return RunState(params, round_state, stage, next_round, step,
                    ResourceTally(**meta['tally']), meta['stage_rows'],
                    # Checkpoints written before catch-up was counted lack it.
                    tuple(meta.get('held', (0,) * fed.num_clients)))


def save(ckpt, state: RunState, fed) -> None:
    """Saves `state` as checkpoint `state.global_round` (asynchronously)."""
    ckpt.save(state.global_round, state.params, state.round_state, {
        'stage': state.stage, 'next_round': state.next_round,
        'global_round': state.global_round, 'tally': dataclasses.asdict(state.tally),
        'stage_rows': state.stage_rows, 'held': list(state.held),
        'client_sizes': np.asarray(fed.sizes).tolist()})
