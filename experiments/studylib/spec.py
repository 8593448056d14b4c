"""What a paper study is: rows of configs, the paper's numbers, the scales.

A study (`Study`) reproduces one table or figure of the paper (paper notes
§7). Each row (`Row`) is one training run: a config string in the form
`python -m lwfedssl_jax.main --config` takes (`configs/x.py:key=value,...`)
to which the runner appends the scale (`,scale=<name>`), and the paper's
printed cells for that row, copied verbatim from the notes' tables.

    Row('lw_mocov3', 'LW-FedSSL', 'configs/table2.py:row=lw_mocov3',
        cells('2.61 (0.30×) | 139 (0.24×) | 1.66 (0.20×) | 83.43 | ...'),
        group='MoCoV3', baseline='fedmocov3')

Declarations are checked when built (cell counts, baselines, smoke rows), so
a transcription slip fails at import, not in a table.
"""

import dataclasses

from experiments.studylib import figures, metrics
from lwfedssl_jax.errors import UserError

# Scales of every study (experiments/README.md, "Paper studies"):
#   smoke: tiny model, synthetic or fixture data, 2 rounds (seconds; tests);
#   cpu:   configs/cifar10_cpu.py's recipe, real data (minutes per row, 2 cores);
#   paper: the paper's settings (ViT-Tiny, 180 rounds; GPU / TPU).
SCALE_NAMES = ('smoke', 'cpu', 'paper')

# Config keys the runner sets on every row of a scale, so that a row is the
# same run whichever study trains it (studies share row directories): the
# random-encoder evaluation (Table 2's "Scratch" row; smoke configs turn it
# off) and XLA's memory / FLOPs probe of one client step (memory columns,
# Fig. 5a; the cpu configs turn it off). At smoke scale, where compiling
# dominates, only the last stage is probed (every mode's peak) and the
# per-stage evaluations are skipped: each costs compiles of its own.
RUN_OVERRIDES = {
    'smoke': (('eval.random_baseline', True), ('log.step_flops', 'last_stage'),
              ('eval.at_stage_end', False)),
    'cpu': (('eval.random_baseline', True), ('log.step_flops', 'every_stage')),
    'paper': (('eval.random_baseline', True), ('log.step_flops', 'every_stage')),
}


def cells(text: str) -> tuple[str, ...]:
    """The cells of one markdown table row, e.g. `'8.72 (1.00×) | 586'`."""
    return tuple(c.strip() for c in text.strip().strip('|').split('|'))


@dataclasses.dataclass(frozen=True)
class Row:
    """One run of a study.

    Attributes:
      name: the run directory under the workdir; studies that declare the
        same name must build the same config (tests/test_studies.py checks),
        so they can share a workdir and train the row once.
      label: the method as the paper names it (FedMoCoV3, LW-FedSSL, ...).
      config: config string; the runner appends `scale=<scale>`.
      paper: the paper's cells, one per `Study.paper_columns` ('–' where the
        paper prints none).
      group: the paper's sub-heading (MoCoV3, 25/100, beta = 5, ...).
      baseline: the row that ratios refer to (None: no ratios).
      scales: the scales at which the row exists (Table 3's 3, 4 and 6
        blocks per stage need the paper's depth of 12).
      at_scale: scale -> complete config string used instead of `config`
        (nothing appended but the runner's --config-args).
    """
    name: str
    label: str
    config: str
    paper: tuple[str, ...]
    group: str = ''
    baseline: str | None = None
    scales: tuple[str, ...] = SCALE_NAMES
    at_scale: dict = dataclasses.field(default_factory=dict)

    def config_string(self, scale: str) -> str:
        """The config string of this row at `scale` (before --config-args)."""
        if scale in self.at_scale:
            return self.at_scale[scale]
        sep = ',' if ':' in self.config else ':'
        return f'{self.config}{sep}scale={scale}'


@dataclasses.dataclass(frozen=True)
class Column:
    """One measured column (`metrics.METRICS[metric]`), optionally beside the
    paper's column `paper` and with its ratio to the row's baseline."""
    metric: str
    paper: str | None = None
    ratio: bool = False


@dataclasses.dataclass(frozen=True)
class Study:
    """One table or figure of the paper.

    Attributes:
      name: registry key and folder under experiments/.
      title: heading of the produced table.
      source: where the paper's numbers were copied from.
      paper_columns: the paper's column headers.
      rows: the runs, in the paper's order.
      smoke_rows: the representative subset trained at smoke scale when no
        --rows is given (every row would be compiled anew: too slow for CI).
      columns: measured columns shown beside the paper's.
      accuracy: also show kNN, linear-probe and fine-tuning columns.
      finetune_metrics: keys of the fine-tuning results shown, in order.
      scratch: the paper's cells of the "Scratch" row (a randomly
        initialised encoder), or None when the table has none.
      figures: names of `figures.FIGURES` drawn from the runs.
      notes: footnotes printed under the table.
    """
    name: str
    title: str
    source: str
    paper_columns: tuple[str, ...]
    rows: tuple[Row, ...]
    smoke_rows: tuple[str, ...]
    columns: tuple[Column, ...] = ()
    accuracy: bool = True
    finetune_metrics: tuple[str, ...] = ('finetune_top1',)
    scratch: tuple[str, ...] | None = None
    figures: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self):
        names = [r.name for r in self.rows]
        problems = [f'duplicate rows {sorted({n for n in names if names.count(n) > 1})}'
                    ] if len(set(names)) < len(names) else []
        for r in self.rows:
            if len(r.paper) != len(self.paper_columns):
                problems.append(f'row {r.name!r} has {len(r.paper)} paper cells for '
                                f'{len(self.paper_columns)} columns')
            if r.baseline is not None and r.baseline not in names:
                problems.append(f'row {r.name!r}: baseline {r.baseline!r} is not a row')
            if set(r.scales) - set(SCALE_NAMES) or set(r.at_scale) - set(SCALE_NAMES):
                problems.append(f'row {r.name!r}: scales must be among {SCALE_NAMES}')
        if self.scratch is not None and len(self.scratch) != len(self.paper_columns):
            problems.append('scratch cells do not match paper_columns')
        smoke = {r.name for r in self.rows_at('smoke')}
        problems += [f'smoke row {n!r} does not exist at smoke scale'
                     for n in self.smoke_rows if n not in smoke]
        problems += [f'column {c.metric!r}: paper column {c.paper!r} unknown'
                     for c in self.columns
                     if c.paper is not None and c.paper not in self.paper_columns]
        problems += [f'unknown metric {c.metric!r}' for c in self.columns
                     if c.metric not in metrics.METRICS]
        problems += [f'unknown figure {f!r}' for f in self.figures if f not in figures.FIGURES]
        if problems:
            raise ValueError(f'study {self.name}: ' + '; '.join(problems))

    def rows_at(self, scale: str) -> tuple[Row, ...]:
        """The rows that exist at `scale`, in order."""
        return tuple(r for r in self.rows if scale in r.scales)

    def row(self, name: str) -> Row:
        """The row called `name`.

        Raises:
          UserError: no such row (the message lists the choices).
        """
        for r in self.rows:
            if r.name == name:
                return r
        raise UserError(f'unknown row {name!r} of study {self.name}; choices: '
                        f'{", ".join(r.name for r in self.rows)}')

    def select(self, scale: str, rows: str | None) -> tuple[Row, ...]:
        """The rows to train: the comma-separated `rows`, else every row at
        `scale` (smoke: `smoke_rows`).

        Raises:
          UserError: an unknown row, or one that does not exist at `scale`.
        """
        if not rows:
            if scale == 'smoke':
                return tuple(self.row(n) for n in self.smoke_rows)
            return self.rows_at(scale)
        chosen = tuple(self.row(n) for n in dict.fromkeys(filter(None, rows.split(','))))
        for r in chosen:
            if scale not in r.scales:
                raise UserError(f'row {r.name!r} of study {self.name} exists only at scale(s) '
                                f'{", ".join(r.scales)}; rows at {scale}: '
                                f'{", ".join(x.name for x in self.rows_at(scale))}')
        return chosen


def check_scale(scale: str) -> str:
    """`scale`, or a UserError naming it and the choices."""
    if scale not in SCALE_NAMES:
        raise UserError(f'unknown scale {scale!r}; choices: {", ".join(SCALE_NAMES)}')
    return scale
