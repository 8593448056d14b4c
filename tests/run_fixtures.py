"""Fake run directories with chosen numbers (no training), laid out as
`train.run` writes them: config.json, metrics.jsonl, summary.json."""

import json
import os

PAPER_GB = 2 ** 20 * 1000


def write_run(path, rounds, *, mode='layerwise', ssl='mocov3', fl='fedavg', total_rounds=None,
              broadcast=None, public_bytes=0, stage_evals=(), final=None, finished=True,
              summary=None, cut_line=False) -> str:
    """Writes a run directory and returns its path.

    Args:
      path: directory to create.
      rounds: one `(stage, loss, bytes_down, bytes_up)` per global round.
      mode, ssl, fl: the run's settings (config.json and summary.json).
      total_rounds: `fl.total_rounds` in the config (default: len(rounds)).
      broadcast: {stage: stage-end broadcast bytes counted when it starts}.
      public_bytes: public-set download, counted when stage 0 starts.
      stage_evals: one `(stage, knn, probe)` per stage end, logged after the
        stage's last round.
      final: `(knn, probe)` of the final evaluation, or None.
      finished: write summary.json (and the final_eval line when `final`).
      summary: keys that replace the summary's (e.g. `resources` entries are
        merged, others replaced).
      cut_line: end metrics.jsonl with half a line, as a crash would.
    """
    os.makedirs(path, exist_ok=True)
    broadcast = broadcast or {}
    config = {'mode': mode, 'ssl': {'name': ssl}, 'fl': {'algorithm': fl,
              'total_rounds': len(rounds) if total_rounds is None else total_rounds},
              'model': {'depth': 2}, 'blocks_per_stage': 1}
    with open(os.path.join(path, 'config.json'), 'w') as f:
        json.dump(config, f)
    totals = {'bytes_down': 0, 'bytes_up': 0, 'stage_end_broadcast_bytes': 0,
              'public_data_bytes': public_bytes}
    lines, previous_stage, evals = [], None, {s: (k, p) for s, k, p in stage_evals}
    for i, (stage, loss, down, up) in enumerate(rounds):
        if stage != previous_stage:
            totals['stage_end_broadcast_bytes'] += broadcast.get(stage, 0)
        totals['bytes_down'] += down
        totals['bytes_up'] += up
        lines.append({'kind': 'round', 'step': i + 1, 'stage': stage, 'round': 0,
                      'global_round': i, 'loss': loss, 'client_loss': [loss, loss],
                      'bytes_down_per_client': down, 'bytes_up_per_client': up,
                      'cumulative': _cumulative(totals)})
        last_of_stage = i + 1 == len(rounds) or rounds[i + 1][0] != stage
        if last_of_stage and stage in evals:
            lines.append({'kind': 'stage_eval', 'step': i + 1, 'stage': stage,
                          'knn_top1': evals[stage][0], 'linear_probe_top1': evals[stage][1]})
        previous_stage = stage
    if finished and final is not None:
        lines.append({'kind': 'final_eval', 'step': len(rounds), 'knn_top1': final[0],
                      'linear_probe_top1': final[1]})
    text = ''.join(json.dumps(l) + '\n' for l in lines)
    if cut_line:
        text += json.dumps(lines[0])[:40]
    with open(os.path.join(path, 'metrics.jsonl'), 'w') as f:
        f.write(text)
    if finished:
        out = {'mode': mode, 'fl_algorithm': fl, 'ssl_method': ssl,
               'final_eval': None if final is None else {'knn_top1': final[0],
                                                         'linear_probe_top1': final[1]},
               'evals': [{'stage': s, 'knn_top1': k, 'linear_probe_top1': p}
                         for s, k, p in stage_evals],
               'resources': _cumulative(totals), 'max_step_memory_bytes': None,
               'wall_time_s': 1.0}
        for key, value in (summary or {}).items():
            if key == 'resources':
                out['resources'].update(value)
            else:
                out[key] = value
        with open(os.path.join(path, 'summary.json'), 'w') as f:
            json.dump(out, f)
    return str(path)


def _cumulative(totals: dict) -> dict:
    """A tally's totals with the derived paper units (as `ResourceTally.summary`)."""
    return {**totals, 'bytes_down_worst_case': totals['bytes_down'], 'paper_flops': 0,
            'xla_flops': None, 'comm_paper_gb': (totals['bytes_down'] + totals['bytes_up'])
            / PAPER_GB, 'comm_worst_case_paper_gb': 0.0, 'paper_gflops': 0.0,
            'xla_gflops': None}
