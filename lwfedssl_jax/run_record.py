"""A run directory read back for plots and comparisons, finished or not.

    record = read_run('runs/quickstart_layerwise')
    steps, mb = comm_curve(record)       # cumulative bytes per client, per round

Reads only `config.json`, `metrics.jsonl` and (when the run has ended)
`summary.json`: no JAX, no checkpoints, so it is cheap enough for a run that
is still training. Lines of `metrics.jsonl` cut by a crash are skipped.
"""

import dataclasses
import json
import os

from lwfedssl_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """What a run directory holds, parsed.

    Attributes:
      workdir: the run directory.
      label: name shown in tables and legends (default: the directory name).
      config: the run's config, as saved in `config.json`.
      summary: `summary.json`, or None while the run is unfinished.
      rounds: `kind == 'round'` lines of `metrics.jsonl`, one per global
        round, sorted by `step`.
      stage_evals: `kind == 'stage_eval'` lines, sorted by `step`.
      final_eval: {knn_top1, linear_probe_top1} of the final evaluation, or
        None before it ran.
    """
    workdir: str
    label: str
    config: dict
    summary: dict | None
    rounds: list
    stage_evals: list
    final_eval: dict | None

    @property
    def finished(self) -> bool:
        """Whether `summary.json` was written (the run ended)."""
        return self.summary is not None

    def setting(self, summary_key: str, config_path: str):
        """A run setting from the summary, else from the config (unfinished
        runs have only the latter); None if neither has it."""
        if self.summary is not None and self.summary.get(summary_key) is not None:
            return self.summary[summary_key]
        return config_value(self.config, config_path)


def config_value(config: dict, path: str):
    """`config['a']['b']` for `path == 'a.b'`, or None if any key is missing."""
    value = config
    for key in path.split('.'):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def read_run(workdir: str, label: str | None = None) -> RunRecord:
    """Reads a run directory.

    Args:
      workdir: a directory written by `python -m lwfedssl_jax.main --workdir`.
      label: name for tables and legends (default: the directory's name).

    Returns:
      The run's `RunRecord`.

    Raises:
      UserError: `workdir` is not a directory or lacks `config.json` or
        `metrics.jsonl`.
    """
    if not os.path.isdir(workdir):
        raise UserError(f'{workdir}: not a directory (expected a run directory written by '
                        'python -m lwfedssl_jax.main --workdir).')
    missing = [name for name in ('config.json', 'metrics.jsonl')
               if not os.path.isfile(os.path.join(workdir, name))]
    if missing:
        raise UserError(f'{workdir}: not a run directory, {" and ".join(missing)} missing.')
    config = _read_json(os.path.join(workdir, 'config.json'))
    summary_path = os.path.join(workdir, 'summary.json')
    summary = _read_json(summary_path) if os.path.isfile(summary_path) else None
    lines = read_metrics(os.path.join(workdir, 'metrics.jsonl'))
    rounds = _last_per_key([l for l in lines if l.get('kind') == 'round'], 'step')
    stage_evals = _last_per_key([l for l in lines if l.get('kind') == 'stage_eval'], 'stage')
    finals = [l for l in lines if l.get('kind') == 'final_eval']
    if summary is not None and summary.get('final_eval') is not None:
        final_eval = summary['final_eval']
    elif finals:   # crashed after the final evaluation, before summary.json
        final_eval = {k: v for k, v in finals[-1].items() if k not in ('kind', 'step')}
    else:
        final_eval = None
    name = os.path.basename(os.path.normpath(os.path.abspath(workdir)))
    return RunRecord(workdir=workdir, label=name if label is None else label, config=config,
                     summary=summary, rounds=rounds, stage_evals=stage_evals,
                     final_eval=final_eval)


def read_metrics(path: str) -> list[dict]:
    """The JSON objects of a `metrics.jsonl`, skipping lines that do not parse
    (the last line of a crashed run may be cut)."""
    out = []
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                out.append(record)
    return out


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f'{path}: not valid JSON ({e}).') from e


def _last_per_key(lines: list[dict], key: str) -> list[dict]:
    """One line per `key` value (the last logged wins), sorted by `step`.

    A resumed run truncates its metrics to the checkpoint before re-logging,
    so duplicates are rare; keeping the last one is the safe reading anyway.
    """
    by_key = {l[key]: l for l in lines if key in l}
    return sorted(by_key.values(), key=lambda l: l.get('step', 0))


def comm_bytes(totals: dict, extras: bool = False) -> int:
    """Communication bytes of one client from a tally's totals.

    Args:
      totals: a round line's `cumulative` or the summary's `resources` (same
        keys: `ResourceTally.summary()`).
      extras: also count the stage-end broadcasts and the public set's
        download, which the paper's "GB" (`comm_paper_gb`, down + up) leaves
        out (see accounting/comm.py).
    """
    total = totals['bytes_down'] + totals['bytes_up']
    if extras:
        total += totals.get('stage_end_broadcast_bytes', 0) + totals.get('public_data_bytes', 0)
    return total


def comm_curve(record: RunRecord, extras: bool = False) -> tuple[list[int], list[int]]:
    """Cumulative communication bytes per client after each logged round.

    Args:
      record: the run.
      extras: as in `comm_bytes`.

    Returns:
      `(steps, bytes)`: global rounds completed and the cumulative bytes
      then. For a finished run the last value is the summary's total (a
      point is added at the last step if something was counted after the
      last round), so the curve and the table agree.
    """
    steps = [r['step'] for r in record.rounds]
    values = [comm_bytes(r['cumulative'], extras) for r in record.rounds]
    if record.summary is not None and record.summary.get('resources'):
        total = comm_bytes(record.summary['resources'], extras)
        if not values or values[-1] != total:
            steps.append(steps[-1] if steps else 0)
            values.append(total)
    return steps, values


def stage_spans(record: RunRecord) -> list[tuple[int, int, int]]:
    """`(stage, first_step, last_step)` of each stage's logged rounds, in order."""
    spans = []
    for r in record.rounds:
        if spans and spans[-1][0] == r['stage']:
            spans[-1] = (r['stage'], spans[-1][1], r['step'])
        else:
            spans.append((r['stage'], r['step'], r['step']))
    return spans


def stage_boundaries(record: RunRecord) -> list[int]:
    """Global steps (rounds completed) after which the stage index changes:
    the last step of every stage but the last logged one."""
    return [last for _, _, last in stage_spans(record)[:-1]]
