"""Reading run directories back (`run_record`) and drawing their curves
(`plots`), on fake run directories with hand-checkable numbers."""

import json
import os

import numpy as np
import pytest

from lwfedssl_jax import plots
from lwfedssl_jax.errors import UserError
from lwfedssl_jax.run_record import comm_curve, read_run, stage_boundaries, stage_spans

import run_fixtures   # noqa: E402  (tests/run_fixtures.py)

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
MB = 2 ** 20

# Layer-wise, 2 stages: rounds 1-2 in stage 0, round 3 in stage 1, whose start
# counts a 400-byte stage-end broadcast (not in the paper's "GB").
ROUNDS = [(0, 6.5, 1000, 500), (0, 6.0, 1000, 500), (1, 7.0, 600, 300)]


def layerwise_run(path, **kwargs):
    defaults = dict(broadcast={1: 400}, stage_evals=[(0, 50.0, 40.0), (1, 60.0, 55.0)],
                    final=(61.0, 56.0),
                    summary={'random_encoder_eval': {'knn_top1': 20.0,
                                                     'linear_probe_top1': 25.0}})
    return run_fixtures.write_run(path, ROUNDS, **{**defaults, **kwargs})


def is_png(path) -> bool:
    with open(path, 'rb') as f:
        data = f.read()
    return data[:8] == PNG_MAGIC and len(data) > 10_000


def test_read_run_skips_a_cut_line_and_reads_the_evaluations(tmp_path):
    record = read_run(layerwise_run(tmp_path / 'lw', cut_line=True))
    assert record.label == 'lw'
    assert [r['step'] for r in record.rounds] == [1, 2, 3]
    assert [r['loss'] for r in record.rounds] == [6.5, 6.0, 7.0]
    assert [(e['stage'], e['step']) for e in record.stage_evals] == [(0, 2), (1, 3)]
    assert record.final_eval == {'knn_top1': 61.0, 'linear_probe_top1': 56.0}
    assert record.finished
    assert read_run(str(tmp_path / 'lw'), label='mine').label == 'mine'


def test_unfinished_run_has_no_summary_nor_final_eval(tmp_path):
    record = read_run(run_fixtures.write_run(tmp_path / 'u', ROUNDS[:2], total_rounds=3,
                                             finished=False))
    assert record.summary is None and record.final_eval is None and not record.finished
    assert record.setting('mode', 'mode') == 'layerwise'
    assert record.setting('ssl_method', 'ssl.name') == 'mocov3'
    # Its curve stops at the last logged round: 2 x (1000 + 500) bytes.
    assert comm_curve(record) == ([1, 2], [1500, 3000])


def test_read_run_refuses_what_is_not_a_run_directory(tmp_path):
    with pytest.raises(UserError, match='not a directory'):
        read_run(str(tmp_path / 'nowhere'))
    (tmp_path / 'half').mkdir()
    (tmp_path / 'half' / 'config.json').write_text('{}')
    with pytest.raises(UserError) as e:
        read_run(str(tmp_path / 'half'))
    message = str(e.value)
    assert 'half' in message and 'metrics.jsonl' in message and 'config.json' not in message
    assert '\n' not in message


def test_communication_curve_ends_at_the_summary_total(tmp_path):
    record = read_run(layerwise_run(tmp_path / 'lw'))
    # Down + up, by hand: 1500, 1500 + 1500, 3000 + 900.
    assert comm_curve(record) == ([1, 2, 3], [1500, 3000, 3900])
    resources = record.summary['resources']
    assert resources['bytes_down'] + resources['bytes_up'] == 3900
    assert resources['comm_paper_gb'] * run_fixtures.PAPER_GB == pytest.approx(3900)
    # With the stage-end broadcast (counted when stage 1 starts).
    assert comm_curve(record, extras=True) == ([1, 2, 3], [1500, 3000, 4300])
    assert resources['stage_end_broadcast_bytes'] == 400


def test_communication_curve_adds_what_was_counted_after_the_last_round(tmp_path):
    # A summary total above the last round's (e.g. a broadcast after it).
    record = read_run(layerwise_run(tmp_path / 'lw', summary={'resources': {
        'stage_end_broadcast_bytes': 1000}}))
    assert comm_curve(record, extras=True) == ([1, 2, 3, 3], [1500, 3000, 4300, 4900])
    assert comm_curve(record) == ([1, 2, 3], [1500, 3000, 3900])


def test_stage_spans_and_boundaries(tmp_path):
    record = read_run(layerwise_run(tmp_path / 'lw'))
    assert stage_spans(record) == [(0, 1, 2), (1, 3, 3)]
    assert stage_boundaries(record) == [2]
    e2e = read_run(run_fixtures.write_run(tmp_path / 'e2e', [(0, 5.0, 1, 1)] * 3, mode='e2e'))
    assert stage_boundaries(e2e) == []


def test_plot_run_writes_the_pngs_under_plots(tmp_path):
    workdir = layerwise_run(tmp_path / 'lw')
    paths = plots.plot_run(workdir)
    assert paths == [str(tmp_path / 'lw' / 'plots' / f'{name}.png')
                     for name in ('loss', 'accuracy', 'communication', 'divergence')]
    assert all(is_png(p) for p in paths)


def test_plot_overlay_writes_the_pngs_for_several_runs(tmp_path):
    records = [read_run(layerwise_run(tmp_path / 'lw')),
               read_run(run_fixtures.write_run(tmp_path / 'u', ROUNDS[:1], finished=False))]
    paths = plots.plot_overlay(records, str(tmp_path / 'out'))
    assert [p.rsplit('/', 1)[-1] for p in paths] == ['loss.png', 'accuracy.png',
                                                     'communication.png', 'divergence.png']
    assert all(is_png(p) for p in paths)


def test_figures_draw_the_runs_numbers(tmp_path):
    records = [read_run(layerwise_run(tmp_path / 'lw')),
               read_run(run_fixtures.write_run(tmp_path / 'e2e', [(0, 5.0, 2000, 2000)] * 3,
                                               mode='e2e'))]
    plt = plots.pyplot()

    fig = plots.loss_figure(records)
    lines = fig.axes[0].get_lines()
    assert [l.get_label() for l in lines if not l.get_label().startswith('_')] == ['lw', 'e2e']
    assert list(lines[0].get_ydata()) == [6.5, 6.0, 7.0]
    # One dashed line, half-way between round 2 (stage 0) and round 3 (stage 1).
    dashed = [l for l in lines if l.get_linestyle() == '--']
    assert len(dashed) == 1 and list(dashed[0].get_xdata()) == [2.5, 2.5]
    assert [t.get_text() for t in fig.axes[0].texts] == ['1', '2']
    plt.close(fig)

    fig = plots.communication_figure(records)
    solid = [l for l in fig.axes[0].get_lines() if l.get_linestyle() == '-']
    dashed = [l for l in fig.axes[0].get_lines() if l.get_linestyle() == '--']
    assert solid[0].get_ydata()[-1] == pytest.approx(3900 / MB)
    assert solid[1].get_ydata()[-1] == pytest.approx(12000 / MB)
    assert len(dashed) == 1 and dashed[0].get_ydata()[-1] == pytest.approx(4300 / MB)
    plt.close(fig)

    fig = plots.accuracy_figure(records)
    knn = fig.axes[0].get_lines()
    assert list(knn[0].get_ydata()) == [50.0, 60.0]     # stage ends
    assert list(knn[1].get_ydata()) == [61.0]           # final
    assert list(knn[2].get_ydata()) == [20.0, 20.0]     # random encoder (horizontal)
    plt.close(fig)


def test_divergence_figure_draws_the_logged_values(tmp_path):
    workdir = layerwise_run(tmp_path / 'lw')
    path = os.path.join(workdir, 'metrics.jsonl')
    lines = [json.loads(l) for l in open(path)]
    for i, line in enumerate(l for l in lines if l['kind'] == 'round'):
        line['divergence'] = 0.5 / (i + 1)
    with open(path, 'w') as f:
        f.writelines(json.dumps(l) + '\n' for l in lines)
    fig = plots.divergence_figure([read_run(workdir)])
    (line,) = fig.axes[0].lines
    assert list(line.get_xdata()) == [1, 2, 3]
    np.testing.assert_allclose(line.get_ydata(), [0.5, 0.25, 0.5 / 3])
