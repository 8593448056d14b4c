"""Checkpointing: bit-identical resume (stage boundary, SIGKILL mid-stage),
damaged checkpoints, config changes, non-finite losses, evaluate/export."""

import glob
import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import tb_events   # noqa: E402  (tests/tb_events.py)
from configs import quickstart, table2
from lwfedssl_jax import builders, evaluate, export, run_dir, train
from lwfedssl_jax.checkpoints import ADDED_KEYS, UnreadableCheckpoints, check_resume_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = 6   # depth 2 -> 2 stages x 3 rounds
# Runs checked for bit-identical resume: the two staged modes, and FedEMA
# (persistent per-client state, 2 of 3 clients per round) end to end.
CASES = {'layerwise': 'configs/quickstart.py:mode=layerwise,smoke=True',
         'progressive': 'configs/quickstart.py:mode=progressive,smoke=True',
         'fedema': 'configs/table2.py:row=fedema,scale=smoke'}
OVERRIDES = {'fedema': {'clients_per_round': 2}}


def config(case):
    module, arg = CASES[case].split(':')
    c = (table2 if 'table2' in module else quickstart).get_config(arg)
    c.fl.total_rounds = ROUNDS
    for key, value in OVERRIDES.get(case, {}).items():
        c.fl[key] = value
    return c


def round_lines(workdir):
    lines = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]
    return [{k: v for k, v in l.items() if k != 'round_time_s'}
            for l in lines if l['kind'] in ('round', 'stage_eval')]


def assert_same_run(workdir, reference):
    ref_summary, ref_dir = reference
    params = run_dir.restore(workdir)[3]
    jax.tree.map(np.testing.assert_array_equal, params, ref_summary['params'])
    assert round_lines(workdir) == round_lines(ref_dir)
    summary = json.load(open(os.path.join(workdir, 'summary.json')))
    assert summary['final_eval'] == ref_summary['final_eval']
    assert summary['resources'] == ref_summary['resources']
    # TensorBoard, with the events after the checkpoint purged, shows the same
    # curves (round times aside) and one views image per stage.
    scalars, images = tb_events.read(workdir)
    ref_scalars, ref_images = tb_events.read(ref_dir)
    scalars.pop('time/round_s'), ref_scalars.pop('time/round_s')
    assert scalars == ref_scalars
    assert images == ref_images and len(images) == len(ref_summary['stages'])


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    """Uninterrupted runs, one per case."""
    out = {}
    for mode in CASES:
        workdir = str(tmp_path_factory.mktemp(f'ref_{mode}'))
        out[mode] = (train.run(config(mode), workdir), workdir)
    return out


def test_checkpoints_kept_are_latest_and_stage_ends(reference):
    steps = sorted(int(s) for s in os.listdir(os.path.join(reference['layerwise'][1],
                                                           'checkpoints')))
    assert steps == [3, 5, 6]   # keep=2 latest, plus stage ends 3 and 6


def test_stage_boundary_resume_is_bit_identical(reference, tmp_path):
    def crash(spec, params):
        if spec.index == 0:
            raise KeyboardInterrupt('simulated crash right after stage 1')

    with pytest.raises(KeyboardInterrupt):
        train.run(config('layerwise'), str(tmp_path), on_stage_end=crash)
    assert max(int(s) for s in os.listdir(tmp_path / 'checkpoints')) == 3
    train.run(config('layerwise'), str(tmp_path))   # grows the tree: stage 2
    assert_same_run(str(tmp_path), reference['layerwise'])


@pytest.mark.parametrize('mode', list(CASES))
def test_sigkill_mid_run_then_resume_is_bit_identical(mode, reference, tmp_path):
    cmd = [sys.executable, '-m', 'lwfedssl_jax.main', '--config', CASES[mode],
           '--workdir', str(tmp_path), f'--config.fl.total_rounds={ROUNDS}'] + [
           f'--config.fl.{k}={v}' for k, v in OVERRIDES.get(mode, {}).items()]
    kill_after = random.randint(1, ROUNDS - 1)   # completed rounds before the kill
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    metrics, deadline = tmp_path / 'metrics.jsonl', time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and metrics.read_text().count('"kind": "round"') >= kill_after:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    assert proc.wait() == -signal.SIGKILL, f'not killed (kill_after={kill_after})'
    assert not (tmp_path / 'summary.json').exists()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_run(str(tmp_path), reference[mode])


def _corrupt(step_dir):
    files = [f for f in glob.glob(f'{step_dir}/params/**', recursive=True)
             if os.path.isfile(f) and 'ocdbt.process' in f]
    assert files
    for f in files:
        data = open(f, 'rb').read()
        open(f, 'wb').write(data[:len(data) // 2])


def test_damaged_latest_checkpoint_is_skipped(reference, tmp_path, capsys):
    train.run(config('layerwise'), str(tmp_path))
    _corrupt(tmp_path / 'checkpoints' / '6')
    train.run(config('layerwise'), str(tmp_path))
    out = capsys.readouterr().out
    assert 'skipping checkpoint 6' in out and 'resumed after 5 rounds' in out
    assert os.listdir(tmp_path / 'checkpoints.damaged')[0].startswith('6-')
    assert_same_run(str(tmp_path), reference['layerwise'])


def test_all_checkpoints_unreadable_fails_and_touches_nothing(tmp_path):
    train.run(config('layerwise'), str(tmp_path))
    for step_dir in glob.glob(str(tmp_path / 'checkpoints' / '[0-9]*')):
        _corrupt(step_dir)
    before = {f: os.path.getmtime(f) for f in glob.glob(str(tmp_path / '**'), recursive=True)}
    with pytest.raises(UnreadableCheckpoints, match='None of the 3 checkpoints'):
        train.run(config('layerwise'), str(tmp_path))
    after = {f: os.path.getmtime(f) for f in glob.glob(str(tmp_path / '**'), recursive=True)}
    assert before == after


def test_config_changes_on_resume(tmp_path):
    train.run(config('layerwise'), str(tmp_path))
    changed = config('layerwise')
    changed.fl.batch_size = 8
    with pytest.raises(ValueError, match=r'affect results:\n  fl.batch_size: saved 16'):
        train.run(changed, str(tmp_path))
    logging_only = config('layerwise')
    logging_only.log.progress = True
    with pytest.raises(ValueError, match='allow_safe_changes'):
        train.run(logging_only, str(tmp_path))
    logging_only.checkpoint.allow_safe_changes = True
    train.run(logging_only, str(tmp_path))


def test_keys_added_since_a_run_was_saved():
    """A config.json written before `ADDED_KEYS` existed resumes at their
    neutral values, and only at those."""
    requested = json.loads(config('layerwise').to_json())
    saved = json.loads(json.dumps(requested))
    for key in ADDED_KEYS:
        *groups, name = key.split('.')   # nested keys: eval.finetune.epochs
        node = saved
        for group in groups:
            node = node[group]
        del node[name]
    check_resume_config(saved, requested, allow_safe_changes=False)
    requested['optim']['compute_dtype'] = 'bfloat16'
    with pytest.raises(ValueError, match="optim.compute_dtype: saved 'float32' -> "
                                         "requested 'bfloat16'"):
        check_resume_config(saved, requested, allow_safe_changes=False)


def test_nonfinite_loss_stops_with_stage_round_client(tmp_path, monkeypatch):
    build_stage = builders.build_stage

    def poisoned(setup, spec, *args):
        fns = build_stage(setup, spec, *args)
        if spec.index == 0:
            return fns
        calls = []

        class Poisoned:
            num_traces, jitted = 1, fns.round_fn.jitted
            sent = staticmethod(fns.round_fn.sent)

            def __call__(self, *a):
                new, uploads, metrics = fns.round_fn(*a)
                calls.append(1)
                if len(calls) == 2:   # stage 1 (second stage), round 1, client 2
                    metrics = {**metrics, 'loss': metrics['loss'].at[2].set(np.nan)}
                return new, uploads, metrics
        return fns._replace(round_fn=Poisoned())

    monkeypatch.setattr(builders, 'build_stage', poisoned)
    with pytest.raises(FloatingPointError, match=r'stage 1, round 1 .*clients \[2\]'):
        train.run(config('layerwise'), str(tmp_path))
    _, _, step, _, meta = run_dir.restore(str(tmp_path))
    assert step == 4 and meta['stage'] == 1   # the last good checkpoint


def test_evaluate_and_export_from_checkpoints(reference, tmp_path):
    _, workdir = reference['layerwise']
    result = evaluate.evaluate_checkpoint(workdir, step=3)
    assert result['stage'] == 0 and result['num_blocks'] == 1
    assert os.path.exists(os.path.join(workdir, 'eval_step3.json'))
    path = export.export_checkpoint(workdir, out=str(tmp_path / 'enc.npz'))
    encoder, params, num_blocks = export.load_encoder(path)
    assert num_blocks == 2 and 'projector' not in params
    _, setup, _, ckpt_params, _ = run_dir.restore(workdir)
    x = jax.random.uniform(jax.random.key(0), (4, 16, 16, 3))
    np.testing.assert_array_equal(encoder.features(params, x, num_blocks),
                                  setup.encoder.features(ckpt_params, x, num_blocks))
    cli = subprocess.run([sys.executable, '-m', 'lwfedssl_jax.evaluate', '--workdir',
                          workdir, '--step', '6'], cwd=REPO, capture_output=True,
                         text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert json.loads(cli.stdout[cli.stdout.index('{'):])['num_blocks'] == 2
