"""Curves of one run, or of several overlaid, from their run directories.

    from lwfedssl_jax import plots
    plots.plot_run('runs/quickstart_layerwise')        # -> <workdir>/plots/*.png
    plots.plot_overlay([read_run(a), read_run(b)], 'runs/compare')

Four figures, each drawn by one function over a list of runs (a single run
is a list of one): `loss.png` (mean client loss per round, stage ends
dashed), `accuracy.png` (kNN and linear-probe top-1 at each stage end and at
the end), `communication.png` (cumulative MB per client) and
`divergence.png` (client divergence per round, paper Fig. 6). matplotlib is
imported inside the functions, with the Agg backend, so that importing this
module costs nothing and works without a display.
"""

import os

from lwfedssl_jax.run_record import RunRecord, comm_curve, read_run, stage_spans

MB = 2 ** 20
FIGURES = ('loss', 'accuracy', 'communication', 'divergence')


def plot_run(workdir: str) -> list[str]:
    """Writes the three figures of one run under `<workdir>/plots/`.

    Returns:
      The paths written.
    """
    return plot_overlay([read_run(workdir)], os.path.join(workdir, 'plots'))


def plot_overlay(records: list[RunRecord], outdir: str) -> list[str]:
    """Writes the three figures with every run overlaid (one colour per run,
    labelled by `record.label`) to `outdir`.

    Returns:
      The paths written.
    """
    if not records:
        raise ValueError('plot_overlay needs at least one run.')
    os.makedirs(outdir, exist_ok=True)
    draw = {'loss': loss_figure, 'accuracy': accuracy_figure,
            'communication': communication_figure, 'divergence': divergence_figure}
    paths = []
    for name in FIGURES:
        paths.append(_save(draw[name](records), os.path.join(outdir, f'{name}.png')))
    return paths


def loss_figure(records: list[RunRecord]):
    """Mean client loss per round vs global round; dashed lines where each
    run's stage changes, with its stage numbers (from 1) written above."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, record in enumerate(records):
        color = _color(i)
        steps = [r['step'] for r in record.rounds]
        ax.plot(steps, [_mean_loss(r) for r in record.rounds], color=color,
                marker='.' if len(steps) < 50 else None, label=record.label)
        spans = stage_spans(record)
        if len(spans) < 2:
            continue   # one stage (e2e): nothing to separate
        for _, _, last in spans[:-1]:
            # Half-way between the last round of a stage and the first of the next.
            ax.axvline(last + 0.5, color=color, linestyle='--', linewidth=0.8, alpha=0.7)
        for stage, first, last in spans:
            # Runs stacked downwards so their labels do not overlap.
            ax.text((first + last) / 2, 0.97 - 0.06 * i, str(stage + 1), color=color,
                    transform=ax.get_xaxis_transform(), ha='center', va='top', fontsize=8)
    ax.set_xlabel('global round')
    ax.set_ylabel('mean client loss')
    ax.set_title('Training loss (dashed: stage ends; numbers: stages)')
    ax.legend(fontsize=8)
    return fig


def accuracy_figure(records: list[RunRecord]):
    """kNN and linear-probe top-1 after each stage (circles) and at the end
    (stars) vs global round; the random-encoder baseline, when the run has
    one, as a dotted horizontal line."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, (key, title) in zip(axes, (('knn_top1', 'kNN top-1'),
                                       ('linear_probe_top1', 'Linear-probe top-1'))):
        for i, record in enumerate(records):
            color = _color(i)
            evals = [e for e in record.stage_evals if e.get(key) is not None]
            ax.plot([e['step'] for e in evals], [e[key] for e in evals], color=color,
                    marker='o', label=record.label)
            if record.final_eval is not None and record.final_eval.get(key) is not None:
                ax.plot([_last_step(record)], [record.final_eval[key]], color=color,
                        marker='*', markersize=12, linestyle='none')
            baseline = (record.summary or {}).get('random_encoder_eval') or {}
            if baseline.get(key) is not None:
                ax.axhline(baseline[key], color=color, linestyle=':', linewidth=1)
        ax.set_title(title)
        ax.set_xlabel('global round')
    axes[0].set_ylabel('top-1 accuracy (%)')
    fig.suptitle('Accuracy (o: stage end, *: final, dotted: random encoder)')
    axes[0].legend(fontsize=8)
    return fig


def communication_figure(records: list[RunRecord]):
    """Cumulative communication per client (MB = bytes / 2^20) vs global round.

    Solid: down + up, what the paper's "GB" counts. Dashed, only for runs
    where it differs: plus the stage-end broadcasts and the public set's
    download (see accounting/comm.py).
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, record in enumerate(records):
        color = _color(i)
        steps, paper = comm_curve(record)
        # From the origin: nothing is exchanged before the first round.
        ax.plot([0] + steps, [0] + [b / MB for b in paper], color=color, label=record.label)
        steps_all, everything = comm_curve(record, extras=True)
        if everything != paper:
            ax.plot([0] + steps_all, [0] + [b / MB for b in everything], color=color,
                    linestyle='--')
    ax.set_xlabel('global round')
    ax.set_ylabel('cumulative MB per client')
    ax.set_title('Communication (solid: down + up; dashed: + stage-end broadcasts, '
                 'public set)', fontsize=10)
    ax.legend(fontsize=8)
    return fig


def divergence_figure(records: list[RunRecord]):
    """Client divergence per round (paper Fig. 6; `round.client_divergence`):
    a random reporting client's mean per-parameter RMS distance to the
    others. Runs logged before it was measured are left out."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, record in enumerate(records):
        rounds = [r for r in record.rounds if r.get('divergence') is not None]
        if rounds:
            ax.plot([r['step'] for r in rounds], [r['divergence'] for r in rounds],
                    color=_color(i), label=record.label)
    ax.set_xlabel('global round')
    ax.set_ylabel('RMS distance per parameter to the others')
    ax.set_title('Client divergence (cf. paper Fig. 6)')
    if ax.lines:
        ax.legend(fontsize=8)
    return fig


def _mean_loss(round_line: dict) -> float:
    """The round's mean client loss (older lines may only have per-client losses)."""
    if round_line.get('loss') is not None:
        return round_line['loss']
    losses = round_line.get('client_loss') or []
    return sum(losses) / len(losses) if losses else float('nan')


def _last_step(record: RunRecord) -> int:
    """Global step of the final evaluation: after the last logged round."""
    return record.rounds[-1]['step'] if record.rounds else 0


def _color(i: int) -> str:
    return f'C{i % 10}'   # matplotlib's default colour cycle


def pyplot():
    """`matplotlib.pyplot` with the Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str) -> str:
    from matplotlib.ticker import MaxNLocator
    for ax in fig.axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))   # rounds are whole
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot().close(fig)
    return path
