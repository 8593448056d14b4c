"""The numbers a study reads from a run directory.

Every metric is a function of a `run_record.RunRecord` (config.json,
metrics.jsonl, summary.json) returning a float, or None when the run does
not hold it (unfinished, or the figure was not logged). Fine-tuning results
are optional files written by `python -m lwfedssl_jax.evaluate --protocol
finetune`: `<row>/eval/finetune_step<N>.json`, layout

    {"protocols": [...], "scratch": false, "step": N,
     "results": {"<dataset source>": {"finetune_top1": 81.2, ...}}}
"""

import dataclasses
import glob
import json
import os
from typing import Callable

from lwfedssl_jax.run_record import RunRecord, config_value

GIB, MIB = 2 ** 30, 2 ** 20


@dataclasses.dataclass(frozen=True)
class Metric:
    """A column's header and how to read it from a run."""
    header: str
    read: Callable[[RunRecord], float | None]


def _summary(record: RunRecord, *keys):
    """`summary[k0][k1]...`, or None."""
    value = record.summary
    for k in keys:
        if not isinstance(value, dict) or value.get(k) is None:
            return None
        value = value[k]
    return value


def _scaled(value, factor):
    return None if value is None else value / factor


def _stage_memory(record: RunRecord, index: int):
    """XLA step memory (MiB) of stage `index` (-1: the last), if probed."""
    stages = _summary(record, 'stages') or []
    if not stages:
        return None
    return _scaled(stages[index].get('step_memory_bytes'), MIB)


def _round_value(record: RunRecord, index: int, fn):
    """`fn(round line)` of the `index`-th logged round, or None."""
    if not record.rounds or record.summary is None:
        return None
    return fn(record.rounds[index])


def _gflops_per_epoch(line: dict, record: RunRecord):
    """Fig. 5b: paper-convention GFLOPs of one local epoch in that round."""
    epochs = config_value(record.config, 'fl.local_epochs') or 1
    return line['paper_flops_per_client'] / epochs / 1e9


def _mb_per_round(line: dict):
    """Fig. 5c: MB (2^20 B) one client downloads and uploads in that round."""
    return (line['bytes_down_per_client'] + line['bytes_up_per_client']) / MIB


def _divergence_after_first_stage(record: RunRecord):
    """Fig. 6: client divergence at the last round of the first stage."""
    first = [r for r in record.rounds if r.get('stage') == 0]
    return first[-1]['divergence'] if first and record.summary is not None else None


METRICS = {
    'memory': Metric('peak step memory (GiB, XLA)',
                     lambda r: _scaled(_summary(r, 'max_step_memory_bytes'), GIB)),
    'gflops': Metric('GFLOPs (paper conv.)', lambda r: _summary(r, 'resources', 'paper_gflops')),
    'comm': Metric('comm. ("GB")', lambda r: _summary(r, 'resources', 'comm_paper_gb')),
    'comm_worst': Metric('comm., worst-case download ("GB")',
                         lambda r: _summary(r, 'resources', 'comm_worst_case_paper_gb')),
    'knn': Metric('kNN top-1 (%)', lambda r: _summary(r, 'final_eval', 'knn_top1')),
    'probe': Metric('linear probe top-1 (%)',
                    lambda r: _summary(r, 'final_eval', 'linear_probe_top1')),
    'blocks_per_stage': Metric('blocks / stage',
                               lambda r: config_value(r.config, 'blocks_per_stage')),
    'stages': Metric('S', lambda r: len(_summary(r, 'stages') or []) or None),
    'rounds_per_stage': Metric('R_s', lambda r: (_summary(r, 'stages') or [{}])[0].get('rounds')),
    'memory_first': Metric('step memory, stage 1 (MiB)', lambda r: _stage_memory(r, 0)),
    'memory_last': Metric('step memory, last stage (MiB)', lambda r: _stage_memory(r, -1)),
    'gflops_epoch_first': Metric('GFLOPs / local epoch, first round', lambda r: _round_value(
        r, 0, lambda line: _gflops_per_epoch(line, r))),
    'gflops_epoch_last': Metric('GFLOPs / local epoch, last round', lambda r: _round_value(
        r, -1, lambda line: _gflops_per_epoch(line, r))),
    'mb_round_first': Metric('MB / round, first round', lambda r: _round_value(
        r, 0, _mb_per_round)),
    'mb_round_last': Metric('MB / round, last round', lambda r: _round_value(
        r, -1, _mb_per_round)),
    'divergence_first': Metric('divergence, first round', lambda r: _round_value(
        r, 0, lambda line: line['divergence'])),
    'divergence_stage1': Metric('divergence, end of stage 1', _divergence_after_first_stage),
    'divergence_last': Metric('divergence, last round', lambda r: _round_value(
        r, -1, lambda line: line['divergence'])),
    'wall': Metric('wall time (s)', lambda r: _summary(r, 'wall_time_s')),
}


def random_encoder(record: RunRecord, key: str):
    """kNN / probe top-1 of the run's randomly initialised encoder, or None."""
    return _summary(record, 'random_encoder_eval', key)


# --- fine-tuning results (optional files) ------------------------------------


def read_finetune(rowdir: str) -> dict:
    """The latest fine-tuning results of a row, pretrained and scratch.

    Reads every `<rowdir>/eval/*.json` whose `protocols` include 'finetune'
    (`evaluate` names them `<protocols joined by +>[_scratch]_step<N>.json`);
    per dataset source the result of the highest `step` wins, so runs of the
    command on different datasets add up.

    Args:
      rowdir: a run directory.

    Returns:
      `{'pretrained': results or None, 'scratch': results or None}`, results
      mapping a dataset source to its metrics.
    """
    best = {'pretrained': {}, 'scratch': {}}   # kind -> source -> (step, metrics)
    for path in sorted(glob.glob(os.path.join(rowdir, 'eval', '*.json'))):
        with open(path) as f:
            data = json.load(f)
        if 'finetune' not in data.get('protocols', ()):
            continue
        kind = best['scratch' if data.get('scratch') else 'pretrained']
        for source, values in data.get('results', {}).items():
            if source not in kind or data.get('step', -1) >= kind[source][0]:
                kind[source] = (data.get('step', -1), values)
    return {k: {s: v for s, (_, v) in by_source.items()} or None
            for k, by_source in best.items()}


def source_label(source: str) -> str:
    """Short name of a dataset source: 'tfds:cifar10' -> 'cifar10',
    'medmnist:/d/bloodmnist_64.npz' -> 'bloodmnist_64'."""
    tail = source.partition(':')[2] or source
    return os.path.splitext(os.path.basename(os.path.normpath(tail)))[0] or source


def finetune_metric(source: str, metric: str) -> str:
    """The key read for `metric` on `source`: Caltech-101 is reported as
    mean per-class accuracy in the paper (notes §4.4), so its top-1 column
    reads `finetune_mean_per_class`."""
    if metric == 'finetune_top1' and 'caltech' in source.lower():
        return 'finetune_mean_per_class'
    return metric
