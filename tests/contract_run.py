"""Shared checks of the registry contract tests: one instrumented smoke run.

`check_run(config, workdir)` trains `config` end to end while recording, on
the real arrays each round function received and returned, the bytes sent
down and up per client (a second code path to the accounting), and checks:
every round's loss is finite; one trace per stage; parts frozen in a stage
are bit-identical to the end of the previous stage; the logged bytes equal
the recorded ones and the compile-only `resources.predict` figures.
"""

import json
import os

import jax
import numpy as np

from lwfedssl_jax import builders, resources, train
from lwfedssl_jax.utils.tree import num_bytes


def _recording(records):
    build_stage = builders.build_stage

    def wrapped(setup, spec, *args):
        fns = build_stage(setup, spec, *args)
        inner = fns.round_fn

        class Recorder:
            jitted = inner.jitted
            sent = staticmethod(inner.sent)

            @property
            def num_traces(self):
                return inner.num_traces

            def __call__(self, frozen, state, *rest):
                down = num_bytes(inner.sent(state.server))
                new, uploads, metrics = inner(frozen, state, *rest)
                k = len(metrics['loss'])
                records.append({'down': down, 'up': num_bytes(uploads) // k})
                return new, uploads, metrics

        return fns._replace(round_fn=Recorder())
    return wrapped


def check_run(config, workdir, monkeypatch) -> dict:
    """Runs `config` and checks the contract; returns the summary."""
    records, snaps = [], []
    monkeypatch.setattr(builders, 'build_stage', _recording(records))
    summary = train.run(config, workdir, on_stage_end=lambda spec, p: snaps.append(
        (spec, jax.tree.map(np.asarray, p))))
    lines = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]
    rounds = [l for l in lines if l['kind'] == 'round']
    assert len(rounds) == config.fl.total_rounds
    assert all(np.isfinite(r['client_loss']).all() for r in rounds)
    assert [s['round_fn_traces'] for s in summary['stages']] == [1] * len(snaps)
    for (_, before), (spec, after) in zip(snaps, snaps[1:]):
        for part in spec.frozen:
            jax.tree.map(np.testing.assert_array_equal, before[part], after[part])
    assert [r['bytes_down_per_client'] for r in rounds] == [r['down'] for r in records]
    assert [r['bytes_up_per_client'] for r in rounds] == [r['up'] for r in records]
    monkeypatch.undo()
    predicted = resources.predict(config)
    assert summary['resources'] == predicted['resources']
    return summary
