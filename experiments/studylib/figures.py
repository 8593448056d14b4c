"""The paper's figures, drawn from a study's runs with matplotlib.

Each figure is `fn(rows, records, path)`: `rows` the study's `Row`s that
have a run, `records` their `RunRecord`s by row name, `path` the PNG to
write. matplotlib is imported inside (Agg backend, `plots.pyplot`).

* `fig5_resources` (paper Fig. 5, notes §7.1): per local epoch, (a) XLA step
  memory of the stage, (b) paper-convention GFLOPs; (c) MB per round.
* `fig6_divergence` (paper Fig. 6, notes §7.9): client divergence per round
  (the engine's `divergence`, `plots.divergence_figure`).
* `fig8_memory_vs_batch` (paper Fig. 8, notes §7.11): peak step memory
  against the client batch size, one line per method.
"""

import dataclasses

from lwfedssl_jax import plots
from lwfedssl_jax.run_record import config_value

MIB = 2 ** 20


def _labelled(rows, records):
    """(row, record relabelled 'Label (row)') for rows with a finished run."""
    return [(r, dataclasses.replace(records[r.name], label=f'{r.label} ({r.name})'))
            for r in rows if records.get(r.name) is not None and records[r.name].finished]


def _per_epoch(record, value_of_round):
    """(local epochs, value) steps: each round's value held for its epochs."""
    epochs = config_value(record.config, 'fl.local_epochs') or 1
    xs, ys = [], []
    for line in record.rounds:
        start = (line['step'] - 1) * epochs
        xs += [start, start + epochs]
        ys += [value_of_round(line)] * 2
    return xs, ys


def fig5_resources(rows, records, path: str) -> None:
    """Paper Fig. 5: memory and GFLOPs per local epoch, MB per round."""
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for i, (row, record) in enumerate(_labelled(rows, records)):
        color = f'C{i % 10}'
        # Stages the probe skipped (smoke scale probes the last only) are gaps.
        memory = {s['stage']: s.get('step_memory_bytes') for s in record.summary['stages']}
        xs, ys = _per_epoch(record, lambda line: float('nan') if memory[line['stage']] is None
                            else memory[line['stage']] / MIB)
        axes[0].plot(xs, ys, color=color, label=record.label)
        epochs = config_value(record.config, 'fl.local_epochs') or 1
        xs, ys = _per_epoch(record, lambda line: line['paper_flops_per_client'] / epochs / 1e9)
        axes[1].plot(xs, ys, color=color, label=record.label)
        axes[2].plot([l['step'] for l in record.rounds],
                     [(l['bytes_down_per_client'] + l['bytes_up_per_client']) / MIB
                      for l in record.rounds], color=color, marker='.', label=record.label)
    for ax, title, xlabel, ylabel in (
            (axes[0], '(a) step memory (XLA)', 'local epoch', 'MiB'),
            (axes[1], '(b) GFLOPs per local epoch (paper conv.)', 'local epoch', 'GFLOPs'),
            (axes[2], '(c) communication per round', 'round', 'MB (down + up)')):
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fig6_divergence(rows, records, path: str) -> None:
    """Paper Fig. 6: client divergence per round (dashed: stage ends)."""
    fig = plots.divergence_figure([rec for _, rec in _labelled(rows, records)])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plots.pyplot().close(fig)


def fig8_memory_vs_batch(rows, records, path: str) -> None:
    """Paper Fig. 8: peak step memory (XLA) against the client batch size."""
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    by_label = {}
    for row, record in _labelled(rows, records):
        memory = record.summary.get('max_step_memory_bytes')
        if memory is not None:
            by_label.setdefault(row.label, []).append(
                (config_value(record.config, 'fl.batch_size'), memory / 2 ** 30))
    for i, (label, points) in enumerate(by_label.items()):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker='o',
                color=f'C{i % 10}', label=label)
    ax.set(title='Peak step memory vs batch size (XLA)', xlabel='client batch size',
           ylabel='GiB')
    ax.set_xscale('log', base=2)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


FIGURES = {
    'fig5_resources': fig5_resources,
    'fig6_divergence': fig6_divergence,
    'fig8_memory_vs_batch': fig8_memory_vs_batch,
}
