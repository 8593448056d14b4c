"""Progress of the rounds of a stage: a tqdm bar on a terminal, one plain line
per round otherwise (a log file or a pipe gets no carriage returns)."""

import sys

from tqdm.auto import tqdm


class RoundProgress:
    """Reports the rounds `first..total-1` of one stage.

    Args:
      stage: 0-based stage index; num_stages: stages in the plan.
      first: the first round to run (> 0 when resuming); total: rounds.
      enabled: `config.log.progress`; False prints nothing.
      stream: where to write (default stderr, as tqdm).
    """

    def __init__(self, stage: int, num_stages: int, first: int, total: int,
                 enabled: bool = True, stream=None):
        self._stream = stream or sys.stderr
        self._label = f'stage {stage + 1}/{num_stages}'
        self._total, self._enabled = total, enabled
        self._bar = None
        if enabled and self._stream.isatty():
            self._bar = tqdm(total=total, initial=first, desc=self._label, leave=True,
                             dynamic_ncols=True, file=self._stream)

    def update(self, round_index: int, loss: float, round_time_s: float,
               bytes_per_client: int) -> None:
        """Reports round `round_index` (0-based) as done."""
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f'{loss:.4f}')
        elif self._enabled:
            print(f'[lwfedssl] {self._label} round {round_index + 1}/{self._total}: '
                  f'loss {loss:.4f}, {round_time_s:.1f} s, '
                  f'{bytes_per_client / 2**20:.3f} MB per client', file=self._stream,
                  flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
