"""`python -m lwfedssl_jax.compare`: the table's cells against hand-computed
values, and the command line's answers to good and bad input."""

import os
import subprocess
import sys

import pytest

from lwfedssl_jax import compare
from lwfedssl_jax.errors import UserError
from lwfedssl_jax.run_record import read_run

import run_fixtures   # noqa: E402  (tests/run_fixtures.py)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIB = 2 ** 30
ROUNDS = [(0, 6.5, 1000, 500), (1, 6.0, 1000, 500)]


def run(path, mode='layerwise', ssl='mocov3', fl='fedavg', final=(80.0, 70.0), memory=None,
        gflops=1.0, comm=1.0, wall=10.0, **kwargs):
    """A finished fake run whose table figures are the arguments."""
    summary = {'max_step_memory_bytes': memory, 'wall_time_s': wall,
               'resources': {'paper_gflops': gflops, 'comm_paper_gb': comm}}
    return run_fixtures.write_run(path, ROUNDS, mode=mode, ssl=ssl, fl=fl, final=final,
                                  summary=summary, **kwargs)


def three_runs(tmp_path):
    return [run(tmp_path / 'a', mode='e2e', final=(80.0, 70.0), memory=2 * GIB, gflops=100.0,
                comm=0.5, wall=100.0),
            run(tmp_path / 'b', final=(78.4, 72.1), memory=GIB // 2, gflops=25.0, comm=0.125,
                wall=50.0),
            run(tmp_path / 'c', mode='progressive', ssl='byol', fl='fedu', final=(81.0, 73.0),
                memory=2 * GIB, gflops=40.0, comm=0.25, wall=75.0)]


def rows(table: str) -> list[str]:
    return table.splitlines()[2:]


def test_table_cells_are_relative_to_the_chosen_baseline(tmp_path):
    records = compare.read_runs(three_runs(tmp_path))
    table = compare.format_table(records, baseline_index=1)
    assert table.splitlines()[0] == (
        '| run | mode | SSL | FL | kNN top-1 (%) | linear-probe top-1 (%) '
        '| peak step memory (GiB, XLA) | GFLOPs (paper conv.) '
        '| comm. ("GB" = B/2^20/1000) | wall time (s) |')
    assert table.splitlines()[1] == '|---|---|---|---|---|---|---|---|---|---|'
    # By hand: a/b = 2/0.5, 100/25, 0.5/0.125 = 4x, 100/50 = 2x; 80 - 78.4 = +1.6.
    assert rows(table) == [
        '| a | e2e | mocov3 | fedavg | 80.0 (+1.6) | 70.0 (-2.1) | 2.00 (4.00x) | 100 (4.00x) '
        '| 0.500 (4.00x) | 100.0 (2.00x) |',
        '| b (baseline) | layerwise | mocov3 | fedavg | 78.4 | 72.1 | 0.500 | 25.0 | 0.125 '
        '| 50.0 |',
        '| c | progressive | byol | fedu | 81.0 (+2.6) | 73.0 (+0.9) | 2.00 (4.00x) '
        '| 40.0 (1.60x) | 0.250 (2.00x) | 75.0 (1.50x) |']


def test_table_baseline_defaults_to_the_first_run_in_the_cli_order(tmp_path):
    records = compare.read_runs(three_runs(tmp_path)[:2])
    assert rows(compare.format_table(records, 0))[1] == (
        '| b | layerwise | mocov3 | fedavg | 78.4 (-1.6) | 72.1 (+2.1) | 0.500 (0.25x) '
        '| 25.0 (0.25x) | 0.125 (0.25x) | 50.0 (0.50x) |')


def test_missing_values_are_na_and_have_no_ratio(tmp_path):
    # The baseline has no XLA memory: the other run's memory shows without ratio.
    records = compare.read_runs([run(tmp_path / 'a', memory=None, gflops=2.0),
                                 run(tmp_path / 'b', memory=GIB, gflops=1.0, final=None)])
    base, other = rows(compare.format_table(records, 0))
    assert base == ('| a (baseline) | layerwise | mocov3 | fedavg | 80.0 | 70.0 | n/a | 2.00 '
                    '| 1.00 | 10.0 |')
    assert other == ('| b | layerwise | mocov3 | fedavg | n/a | n/a | 1.00 | 1.00 (0.50x) '
                     '| 1.00 (1.00x) | 10.0 (1.00x) |')


def test_unfinished_run_shows_na_and_is_listed(tmp_path):
    dirs = [run(tmp_path / 'a', gflops=2.0),
            run_fixtures.write_run(tmp_path / 'u', ROUNDS[:1], mode='progressive',
                                   total_rounds=4, finished=False)]
    table = compare.format_table(compare.read_runs(dirs), 0)
    assert rows(table)[1] == ('| u | progressive | mocov3 | fedavg | n/a | n/a | n/a | n/a '
                              '| n/a | n/a |')
    assert table.splitlines()[-1] == 'Unfinished: u (1 of 4 rounds logged).'
    # As the baseline, it gives the others no ratios.
    assert rows(compare.format_table(compare.read_runs(dirs), 1))[0] == (
        '| a | layerwise | mocov3 | fedavg | 80.0 | 70.0 | n/a | 2.00 | 1.00 | 10.0 |')


def test_run_labels_tell_same_named_runs_apart():
    assert compare.run_labels(['x/a/run', 'y/b/run', 'z/c']) == ['a/run', 'b/run', 'c']
    assert compare.run_labels(['p/a/run', 'q/a/run']) == ['p/a/run', 'q/a/run']
    assert compare.run_labels(['r', 'r/']) == ['r #0', 'r #1']


def test_resolve_baseline(tmp_path):
    dirs = [str(tmp_path / 'a'), str(tmp_path / 'b')]
    assert compare.resolve_baseline('1', dirs) == 1
    assert compare.resolve_baseline(str(tmp_path / 'b') + '/', dirs) == 1
    with pytest.raises(UserError, match=r"--baseline='2'.*0 to 1"):
        compare.resolve_baseline('2', dirs)
    with pytest.raises(UserError, match=r"--baseline='-1'"):
        compare.resolve_baseline('-1', dirs)
    with pytest.raises(UserError, match=r"--baseline='c'.*not one of the runs"):
        compare.resolve_baseline('c', dirs)


def cli(*args):
    return subprocess.run([sys.executable, '-m', 'lwfedssl_jax.compare', *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def test_cli_prints_the_table_and_writes_it_with_the_plots(tmp_path):
    dirs = three_runs(tmp_path)
    out = tmp_path / 'cmp'
    # Flags after the run directories, as users type them.
    result = cli(*dirs, '--baseline', dirs[1], '--out', out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert compare.HEADER in result.stdout
    assert '| b (baseline) | layerwise |' in result.stdout
    table = (out / 'compare.md').read_text()
    assert table in result.stdout
    assert rows(table)[0].startswith('| a | e2e | mocov3 | fedavg | 80.0 (+1.6) |')
    for name in ('loss.png', 'accuracy.png', 'communication.png'):
        assert (out / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
        assert str(out / name) in result.stdout


def assert_user_error(result, *words):
    """Exit status 2 and one `error:` line naming `words`, no traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
    assert 'Traceback' not in result.stderr + result.stdout
    for word in words:
        assert word in lines[0]


def test_cli_refuses_a_directory_that_is_not_a_run(tmp_path):
    good = run(tmp_path / 'a')
    (tmp_path / 'empty').mkdir()
    assert_user_error(cli(good, tmp_path / 'empty', '--out', tmp_path / 'o'),
                      str(tmp_path / 'empty'), 'config.json', 'metrics.jsonl')
    assert_user_error(cli(tmp_path / 'missing', '--out', tmp_path / 'o'),
                      str(tmp_path / 'missing'), 'not a directory')
    assert not (tmp_path / 'o').exists()


def test_cli_refuses_a_bad_baseline(tmp_path):
    dirs = three_runs(tmp_path)
    assert_user_error(cli(*dirs, '--baseline=3', '--out', tmp_path / 'o'),
                      '--baseline', "'3'", '0 to 2')
    assert_user_error(cli(*dirs, f'--baseline={tmp_path}', '--out', tmp_path / 'o'),
                      '--baseline', str(tmp_path), 'not one of the runs')


def test_cli_without_runs_prints_the_usage():
    assert_user_error(cli(), 'usage: python -m lwfedssl_jax.compare RUN_DIR')


def test_read_run_label_defaults_to_the_directory_name(tmp_path):
    assert read_run(run(tmp_path / 'some_run')).label == 'some_run'
