"""The training loop dispatches round r + 1 before it reads round r's
results (`train._run_stage`), and every round still gets exactly the inputs
of a one-round-at-a-time loop: the previous round's state, its own index,
the completed-round count and the participants drawn from the seed."""

import jax
import numpy as np

from configs import quickstart
from lwfedssl_jax import builders, round_draws, train


class _Recorded:
    """An array-like whose reads are logged (`np.asarray` calls `__array__`)."""

    def __init__(self, value, events, tag):
        self._value, self._events, self._tag = value, events, tag

    def __array__(self, dtype=None, copy=None):
        self._events.append(('read', *self._tag))
        return np.asarray(self._value, dtype)


def test_rounds_are_dispatched_one_ahead_with_sequential_inputs(tmp_path, monkeypatch):
    config = quickstart.get_config('mode=layerwise,smoke=True')
    config.fl.total_rounds = 6            # 2 stages x 3 rounds
    config.eval.at_stage_end = False
    config.eval.random_baseline = False
    events, calls = [], []
    build_stage = builders.build_stage

    def recording_build_stage(setup, spec, *args, **kwargs):
        fns = build_stage(setup, spec, *args, **kwargs)
        inner = fns.round_fn

        class Recording:
            num_traces, jitted = 1, inner.jitted
            sent = staticmethod(inner.sent)

            def __call__(self, frozen, state, images, sizes, selected, reported,
                         rounds_done, r, key, public):
                tag = (spec.index, int(r))
                events.append(('call', *tag))
                new, uploads, metrics = inner(frozen, state, images, sizes, selected,
                                              reported, rounds_done, r, key, public)
                calls.append(dict(tag=tag, state_in=state, state_out=new,
                                  rounds_done=int(rounds_done), selected=np.asarray(selected)))
                return new, uploads, {**metrics,
                                      'loss': _Recorded(metrics['loss'], events, tag)}
        return fns._replace(round_fn=Recording())

    monkeypatch.setattr(builders, 'build_stage', recording_build_stage)
    train.run(config, str(tmp_path))

    # Within a stage: call r + 1 comes before read r; the last round is read
    # with nothing left to dispatch.
    expected = []
    for stage in range(2):
        expected.append(('call', stage, 0))
        for r in range(3):
            if r + 1 < 3:
                expected.append(('call', stage, r + 1))
            expected.append(('read', stage, r))
    assert events == expected
    # Sequential inputs: chained states, completed-round counts 0..5, and the
    # participants a one-at-a-time loop draws.
    assert [c['rounds_done'] for c in calls] == list(range(6))
    for before, after in zip(calls, calls[1:]):
        if before['tag'][0] == after['tag'][0]:
            assert after['state_in'] is before['state_out']
    for c in calls:
        stage, r = c['tag']
        np.testing.assert_array_equal(
            c['selected'], round_draws.round_clients(config, stage, r, config.fl.num_clients))
    jax.effects_barrier()
