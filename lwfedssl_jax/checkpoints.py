"""Orbax checkpoints of a multi-stage run under `<workdir>/checkpoints`.

Step n is the server state after n completed rounds (global round count).
Each step holds up to three items:

* `params`: every present encoder part and the heads (StandardSave);
* `state`: mid-stage only, the rest of the round state (server optimiser
  state, algorithm extras, every client's persistent state), saved as a
  flat dict of its leaves (`'00000'`, ...) so any pytree (optax NamedTuples,
  empty containers) round-trips; its structure comes from the stage's
  abstract round state at restore time;
* `meta`: JSON with the stage, the next round within it, the resource
  tally, the per-stage rows and the client partition sizes.

Randomness needs no state: every key is `fold_in(seed stream, stage, round,
client, step)`, so (seed, stage, round) restores it exactly.

The parameter tree grows between stages, so restoring is two-step: read
`meta` alone first (JSON, structure-free), then build the abstract parameter
tree of that stage and restore `params` into it.

Retention: the last `keep` checkpoints plus every stage-end checkpoint
(orbax preservation policies). Saves are asynchronous; `close()` waits.
A checkpoint that fails to restore (truncated, corrupted) is reported and
skipped for the previous one; if none can be read, `restore_latest` raises
rather than letting a run start over and overwrite them.
"""

import logging
import os
import time

import jax
import orbax.checkpoint as ocp

from lwfedssl_jax.errors import RunDirError
from lwfedssl_jax.utils.tree import flatten_dict

PARAMS, STATE, META = 'params', 'state', 'meta'


def _without_server_params(round_state):
    """The round state minus the server's params (saved under `params`)."""
    return round_state._replace(server=round_state.server._replace(params={}))


def _on_a_device(tree):
    """Restore targets placed: leaves without a sharding go to this process's
    first device, so a checkpoint saved on another topology (a client mesh,
    several processes) restores anywhere."""
    here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda x: x if getattr(x, 'sharding', None) is not None
                        else jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=here), tree)


def _leaves_dict(tree) -> dict:
    return {f'{i:05d}': x for i, x in enumerate(jax.tree.leaves(tree))}


class UnreadableCheckpoints(RuntimeError):
    """Every checkpoint in the directory failed to restore."""


class RunCheckpoints:
    """Saves and restores one run's checkpoints.

    Args:
      workdir: the run's output directory.
      keep: how many of the latest checkpoints to keep (besides stage ends).
      stage_end_steps: the steps that end a stage (always kept).
      read_only: for readers (evaluate, export): never write or clean up, so
        a training process can keep running beside them.
    """

    def __init__(self, workdir: str, *, keep: int, stage_end_steps,
                 read_only: bool = False):
        if keep < 1:
            raise ValueError(f'checkpoint.keep must be >= 1, got {keep}.')
        self.directory = os.path.abspath(os.path.join(workdir, 'checkpoints'))
        self.damaged_directory = self.directory + '.damaged'
        self._read_only = read_only
        policy = ocp.checkpoint_managers.AnyPreservationPolicy([
            ocp.checkpoint_managers.LatestN(n=keep),
            ocp.checkpoint_managers.CustomSteps(steps=list(stage_end_steps))])
        self._options = ocp.CheckpointManagerOptions(
            preservation_policy=policy, create=not read_only,
            cleanup_tmp_directories=not read_only, read_only=read_only)
        self._manager = self._open()

    def _open(self):
        return ocp.CheckpointManager(self.directory, options=self._options,
                                     item_names=(PARAMS, STATE, META))

    def _set_aside(self, steps) -> None:
        """Moves damaged checkpoints newer than the one resumed from to
        `checkpoints.damaged/` (kept for inspection), so that the resumed run
        can save those steps again."""
        os.makedirs(self.damaged_directory, exist_ok=True)
        self._manager.close()
        for step in steps:
            target = os.path.join(self.damaged_directory, f'{step}-{time.time():.0f}')
            os.replace(os.path.join(self.directory, str(step)), target)
            print(f'[lwfedssl] damaged checkpoint {step} moved to {target}', flush=True)
        self._manager = self._open()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, params: dict, round_state, meta: dict) -> None:
        """Starts an asynchronous save at `step`.

        Args:
          params: every present part (the server's model).
          round_state: the stage's `RoundState` mid-stage, or None at a
            stage end (client state and extras end with their stage).
          meta: JSON-able metadata.
        """
        items = {PARAMS: ocp.args.StandardSave(params)}
        leaves = {} if round_state is None else _leaves_dict(
            _without_server_params(round_state))
        if leaves:
            items[STATE] = ocp.args.StandardSave(leaves)
        meta = {**meta, 'has_round_state': round_state is not None}
        self._manager.save(step, args=ocp.args.Composite(
            **items, **{META: ocp.args.JsonSave(meta)}))

    def read_meta(self, step: int) -> dict:
        return self._manager.restore(step, args=ocp.args.Composite(**{
            META: ocp.args.JsonRestore()}))[META]

    def restore(self, step: int, abstract_params_fn,
                abstract_round_state_fn=None) -> tuple[dict, object, dict]:
        """Restores `(params, round_state, meta)` of `step`.

        Args:
          abstract_params_fn: `meta -> pytree of ShapeDtypeStruct`, the
            parameter structure of the stage recorded in `meta` (leaves
            with no sharding are restored on this process's first device).
          abstract_round_state_fn: `meta -> RoundState of ShapeDtypeStruct`
            (the stage's); None for readers that need the parameters only.

        Returns:
          The parameters, the round state (None at stage ends or when not
          asked for) and the metadata.
        """
        meta = self.read_meta(step)
        want_state = meta.get('has_round_state') and abstract_round_state_fn
        items = {PARAMS: ocp.args.StandardRestore(_on_a_device(abstract_params_fn(meta)))}
        if want_state:
            abstract = _on_a_device(abstract_round_state_fn(meta))
            rest = _without_server_params(abstract)
            leaves = _leaves_dict(rest)
            if leaves:
                items[STATE] = ocp.args.StandardRestore(leaves)
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        params, round_state = restored[PARAMS], None
        if want_state:
            values = restored[STATE] if leaves else {}
            round_state = jax.tree.unflatten(jax.tree.structure(rest),
                                             [values[k] for k in sorted(values)])
            server = round_state.server._replace(
                params={p: params[p] for p in abstract.server.params})
            round_state = round_state._replace(server=server)
        return params, round_state, meta

    def restore_latest(self, abstract_params_fn, abstract_round_state_fn=None,
                       validate_fn=None):
        """The newest checkpoint that restores, or None if there are none.

        Args:
          abstract_params_fn, abstract_round_state_fn: see `restore`.
          validate_fn: optional `(params, meta) -> None` raising on bad
            content (e.g. non-finite values).

        Returns:
          `(step, params, round_state, meta)` or None.

        Raises:
          UnreadableCheckpoints: checkpoints exist but none restores.
        """
        steps = self.all_steps()
        errors = []
        for step in reversed(steps):
            try:
                params, round_state, meta = self.restore(
                    step, abstract_params_fn, abstract_round_state_fn)
                if validate_fn is not None:
                    validate_fn(params, meta)
                if errors:
                    logging.warning('Resuming from checkpoint %d instead.', step)
                    if not self._read_only:
                        self._set_aside([s for s in steps if s > step])
                return step, params, round_state, meta
            except Exception as e:  # noqa: BLE001 - any failure means "skip it".
                msg = f'checkpoint {step} in {self.directory} is unreadable ' \
                      f'({type(e).__name__}: {str(e)[:300]})'
                logging.warning('Skipping %s', msg)
                print(f'[lwfedssl] WARNING: skipping {msg}', flush=True)
                errors.append(msg)
        if steps:
            raise UnreadableCheckpoints(
                f'None of the {len(steps)} checkpoints in {self.directory} can be '
                'restored:\n  ' + '\n  '.join(errors) + '\nMove or delete that '
                'directory to start over; it was left untouched.')
        return None

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


# Config keys whose change cannot alter a run's numbers: logging, where
# outputs and caches go, and checkpointing itself. Anything else differing
# from the saved config refuses a resume.
SAFE_TO_CHANGE = ('log.', 'checkpoint.', 'accounting.outdir', 'data.cache_dir')

# Keys added after runs were saved, with the value that reproduces those runs:
# a saved config without the key resumes when this value is requested.
ADDED_KEYS = {'optim.compute_dtype': 'float32', 'optim.remat': 'none',
              'fl.memory_budget_gib': 0.0,
              # Same numbers as the joint loss up to float round-off, which
              # no code version preserves across releases anyway.
              'optim.views_in_turn': True,
              # Evaluation (evaluation/protocols.py): what runs before they
              # existed, and the fine-tuning defaults (never run then).
              'eval.protocols': ('knn', 'linear_probe'), 'eval.datasets': (),
              'eval.finetune.epochs': 40, 'eval.finetune.warmup_epochs': 10,
              'eval.finetune.batch_size': 256, 'eval.finetune.learning_rate': 1e-3,
              'eval.finetune.weight_decay': 1e-5, 'eval.finetune.randaugment_ops': 2,
              'eval.finetune.randaugment_magnitude': 9, 'eval.finetune.train_subset': 0}


def check_resume_config(saved: dict, requested: dict, allow_safe_changes: bool) -> None:
    """Refuses to resume with a config that would change the run.

    Args:
      saved: the run's `config.json` (plain dict).
      requested: the config of this invocation (plain dict).
      allow_safe_changes: accept differences limited to `SAFE_TO_CHANGE`.

    Raises:
      RunDirError: listing every differing key and the way out.
    """
    plain = lambda d: {k: tuple(v) if isinstance(v, list) else v   # JSON lists
                       for k, v in flatten_dict(d, sep='.').items()}
    a, b = plain(saved), plain(requested)
    # A run saved before a key existed ran as that key's neutral value does.
    a = {**{k: v for k, v in ADDED_KEYS.items() if k in b and k not in a}, **a}
    diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    unsafe = [k for k in diff if not k.startswith(SAFE_TO_CHANGE)]
    lines = [f'  {k}: saved {a.get(k, "<absent>")!r} -> requested {b.get(k, "<absent>")!r}'
             for k in diff]
    if unsafe:
        raise RunDirError(
            'Cannot resume: the config differs from the saved run in keys that '
            'affect results:\n' + '\n'.join(lines) + '\nUse a new --workdir, or '
            'rerun with the saved config.json.')
    if diff and not allow_safe_changes:
        raise RunDirError(
            'The config differs from the saved run only in safe keys:\n'
            + '\n'.join(lines) + '\nRerun with --config.checkpoint.allow_safe_changes=True '
            'to resume with them.')
