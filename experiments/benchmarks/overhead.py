"""Host overhead of the training loop: the share of a round spent outside the
jitted round function, and whether it grows with rounds (issue 12, item 5).

    python experiments/benchmarks/overhead.py [--rounds 32] [--mode layerwise]

Runs `train.run` on the quickstart config (`configs/quickstart.py`, digits,
4 clients) with `--rounds` rounds, once per `--every-rounds` value
(`checkpoint.every_rounds`; the quickstart ships 1; 0 = no checkpoints), and
times, per round:

* round: the jitted round function's computation, from the later of its
  call and the previous round's outputs being ready (the loop dispatches
  round r + 1 before it reads round r's results, so a call can precede the
  previous round's end) until its outputs are ready (a helper thread waits
  on them, with a 0.5 ms interpreter switch interval, so the loop runs as it
  does unwrapped);
* host: from the outputs of round r being ready to the call of round r + 1
  within a stage, or 0 when round r + 1 was already queued: the time no
  round is computing. Host work that runs while a round computes is not in
  it, but on this 2-core machine it slows the round it overlaps, which the
  round column shows.

The first round of each stage (it compiles) and the stage ends (evaluation,
stage-end checkpoint) are left out. The host time is also split by the
loop's pieces (each wrapped with a timer), and its trend is a least-squares
slope over the global round index. The issue's target: host < 5% of a round,
not growing.
"""

import argparse
import collections
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..'))
import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs import quickstart  # noqa: E402
from lwfedssl_jax import (builders, platform, round_draws, run_state, summaries, train,  # noqa: E402
                          writers)
from lwfedssl_jax.accounting import tally as tally_lib  # noqa: E402
from lwfedssl_jax import progress as progress_lib  # noqa: E402


class TimedRound:
    """Wraps a stage's `RoundFunction`: records `[stage, call, ready]` per
    call; a helper thread waits for the outputs, so the loop's host work
    still overlaps the computation as it does unwrapped."""

    def __init__(self, round_fn, stage: int, calls: list):
        self._fn, self._stage, self._calls = round_fn, stage, calls

    def __getattr__(self, name):
        return getattr(self._fn, name)

    def __call__(self, *args):
        record = [self._stage, time.perf_counter(), None]
        out = self._fn(*args)
        self._calls.append(record)

        def wait():
            jax.block_until_ready(out)
            record[2] = time.perf_counter()
        threading.Thread(target=wait, daemon=True).start()
        return out


def _timed(owner, name: str, spent: dict):
    """Replaces `owner.name` by a wrapper adding its wall time to `spent[name]`."""
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[name].append((time.perf_counter(), time.perf_counter() - t))
    setattr(owner, name, wrapper)


def measure(rounds: int, mode: str, every_rounds: int) -> dict:
    config = quickstart.get_config(f'mode={mode}')
    config.fl.total_rounds = rounds
    config.checkpoint.enabled = every_rounds > 0
    config.checkpoint.every_rounds = max(every_rounds, 1)
    config.eval.probe_epochs = 5          # stage-end evals are not timed; keep them short
    config.eval.random_baseline = False
    calls, spent = [], collections.defaultdict(list)
    build_stage = builders.build_stage

    def timed_build_stage(setup, spec, *args, **kwargs):
        fns = build_stage(setup, spec, *args, **kwargs)
        return fns._replace(round_fn=TimedRound(fns.round_fn, spec.index, calls))

    builders.build_stage = timed_build_stage
    pieces = [(run_state, 'save'), (round_draws, 'round_clients'),
              (round_draws, 'round_reports'),
              (tally_lib.ResourceTally, 'add_round'), (tally_lib.ResourceTally, 'summary'),
              (writers.RunWriter, 'log'), (summaries.TensorBoard, 'scalars'),
              (progress_lib.RoundProgress, 'update')]
    originals = [(o, n, getattr(o, n)) for o, n in pieces]
    for owner, name in pieces:
        _timed(owner, name, spent)
    try:
        with tempfile.TemporaryDirectory() as workdir:
            train.run(config, workdir)
    finally:
        builders.build_stage = build_stage
        for owner, name, fn in originals:
            setattr(owner, name, fn)
    rows = []      # (global round, stage, round s, host s, host window)
    for i in range(len(calls) - 1):
        (stage, start, end), (next_stage, next_start, _) = calls[i], calls[i + 1]
        first_of_stage = i == 0 or calls[i - 1][0] != stage
        if next_stage == stage and not first_of_stage:
            start = max(start, calls[i - 1][2])   # queued behind round i - 1
            host_end = max(next_start, end)       # round i + 1 queued: no gap
            rows.append((i, stage, end - start, host_end - end, (end, host_end),
                         (start, end)))
    breakdown, overlapped = {}, {}
    for name, events in spent.items():   # each piece's time, by where it ended
        breakdown[name] = sum(d for t, d in events for row in rows
                              if row[4][0] <= t <= row[4][1]) / len(rows)
        overlapped[name] = sum(d for t, d in events for row in rows
                               if row[5][0] <= t <= row[5][1]) / len(rows)
    return dict(rows=rows, breakdown=breakdown, overlapped=overlapped, rounds=rounds,
                mode=mode,
                every_rounds=every_rounds)


def report(result: dict) -> str:
    rows = result['rows']
    r = np.array([x[2] for x in rows])
    h = np.array([x[3] for x in rows])
    g = np.array([x[0] for x in rows], float)
    half = len(rows) // 2
    share = lambda a, b: 100 * b.sum() / (a.sum() + b.sum())
    slope = np.polyfit(g, h * 1e3, 1)[0]
    every = result['every_rounds']
    lines = [f'quickstart {result["mode"]}, {result["rounds"]} rounds, mid-stage checkpoints '
             f'{f"every {every} round(s)" if every else "off"}; {len(rows)} timed rounds',
             '', '| rounds | round (ms, median) | host (ms, median) | host share of round+host |',
             '|---|---|---|---|']
    stage = np.array([x[1] for x in rows])
    parts = [('all', np.ones(len(rows), bool)), ('first half', np.arange(len(rows)) < half),
             ('second half', np.arange(len(rows)) >= half)]
    parts += [(f'stage {k + 1}', stage == k) for k in sorted(set(stage.tolist()))]
    for name, sel in parts:
        lines.append(f'| {name} | {1e3 * np.median(r[sel]):.1f} | '
                     f'{1e3 * np.median(h[sel]):.1f} | {share(r[sel], h[sel]):.1f}% |')
    within = [np.polyfit(g[stage == k], 1e3 * h[stage == k], 1)[0]
              for k in set(stage.tolist()) if (stage == k).sum() > 2]
    lines += ['', f'host time trend: {slope:+.3f} ms per round over the run; within a '
              f'stage {np.mean(within):+.3f} ms per round (mean of the stages\' least-squares '
              'slopes)', '', '| loop piece | ms per round, host (no round computing) '
              '| ms per round, while a round computes |', '|---|---|---|']
    for name, ms in sorted(result['breakdown'].items(), key=lambda kv: -kv[1]):
        lines.append(f'| {name} | {1e3 * ms:.2f} | {1e3 * result["overlapped"][name]:.2f} |')
    rest = h.mean() - sum(result['breakdown'].values())
    lines.append(f'| (rest of the loop) | {1e3 * rest:.2f} | |')
    return '\n'.join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=32)
    ap.add_argument('--mode', default='layerwise')
    ap.add_argument('--every-rounds', type=int, nargs='+', default=[1, 4, 0],
                    help='checkpoint.every_rounds of each run (0 = checkpoints off; the '
                         'quickstart ships 1)')
    args = ap.parse_args()
    platform.setup()
    sys.setswitchinterval(5e-4)   # the waiting thread records "ready" promptly
    for every in args.every_rounds:
        print(report(measure(args.rounds, args.mode, every)) + '\n', flush=True)


if __name__ == '__main__':
    main()
