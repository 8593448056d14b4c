"""Run outputs in the workdir: config.json, metrics.jsonl, summary.json, and
the TensorBoard events (`summaries.py`)."""

import json
import os

import numpy as np

from lwfedssl_jax.summaries import TensorBoard


def _plain(x):
    """JSON-able version of numpy / jax scalars and arrays."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, 'tolist'):
        return np.asarray(x).tolist()
    return x


class RunWriter:
    """Appends one JSON object per line to `metrics.jsonl`; flushes each write
    so that a crash loses nothing already logged. `tb` writes the same run's
    TensorBoard events.

    Args:
      workdir: the run directory (created if needed).
      resume_step: the checkpoint step a resumed run starts from (0 = fresh).
    """

    def __init__(self, workdir: str, resume_step: int = 0):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self._metrics = open(os.path.join(workdir, 'metrics.jsonl'), 'a')
        self.tb = TensorBoard(workdir, resume_step)

    def write_json(self, name: str, obj) -> str:
        path = os.path.join(self.workdir, name)
        with open(path + '.tmp', 'w') as f:
            json.dump(_plain(obj), f, indent=2)
        os.replace(path + '.tmp', path)   # atomic: never a half-written file
        return path

    def log(self, **record) -> None:
        self._metrics.write(json.dumps(_plain(record)) + '\n')
        self._metrics.flush()

    @staticmethod
    def truncate_metrics(path: str, step: int) -> None:
        """Keeps only the lines logged at or before checkpoint `step` (a resumed
        run re-logs what came after it, identically)."""
        if not os.path.exists(path):
            return
        with open(path) as f:
            lines = [l for l in f if l.strip()]
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:   # a line cut by a crash
                continue
            if record.get('step', step + 1) <= step and record.get('kind') != 'final_eval':
                kept.append(line if line.endswith('\n') else line + '\n')
        with open(path + '.tmp', 'w') as f:
            f.writelines(kept)
        os.replace(path + '.tmp', path)

    def close(self) -> None:
        self._metrics.close()
        self.tb.close()


class DiscardWriter:
    """The writer of a multi-process run's other processes (`distributed.py`):
    process 0 writes the run's files, the others call the same methods and
    write nothing."""

    class _Events:
        def scalars(self, step: int, values: dict) -> None:
            pass

        def image(self, tag: str, step: int, image) -> None:
            pass

        def close(self) -> None:
            pass

    def __init__(self):
        self.tb = self._Events()

    def write_json(self, name: str, obj) -> None:
        pass

    def log(self, **record) -> None:
        pass

    def close(self) -> None:
        pass
