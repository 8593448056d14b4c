"""Every entry point answers a user's mistake in one line: exit status 2, no
traceback, the key (or flag) named, within seconds; `--help` starts with
the commands a user most likely wants; `--debug` shows the traceback."""

import os
import subprocess
import sys
import time

import pytest

from configs import quickstart

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QS = '--config=configs/quickstart.py'
SMOKE = '--config=configs/quickstart.py:smoke=1'


def _run(module, *args, env=None):
    """(status, stdout, stderr, seconds) of `python -m lwfedssl_jax.<module> args`."""
    t0 = time.time()
    proc = subprocess.run([sys.executable, '-m', f'lwfedssl_jax.{module}', *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, 'LWFEDSSL_DEBUG': '', **(env or {})})
    return proc.returncode, proc.stdout, proc.stderr, time.time() - t0


@pytest.fixture(scope='module')
def paths(tmp_path_factory):
    """A file where a directory is expected, a run directory without
    checkpoints (its config.json only) and an empty directory."""
    root = tmp_path_factory.mktemp('cli')
    afile = root / 'afile'
    afile.write_text('x')
    run = root / 'run'
    run.mkdir()
    (run / 'config.json').write_text(quickstart.get_config('smoke=1').to_json())
    (root / 'empty').mkdir()
    return {'file': str(afile), 'run': str(run), 'empty': str(root / 'empty'),
            'out': str(root / 'out')}


# (entry point, arguments, text the one error line must contain). `{file}`,
# `{run}`, `{empty}`, `{out}` are filled from the `paths` fixture.
CASES = [
    # The cases of the issue.
    ('main', [QS, '--config.no_such_key=1', '--workdir={out}'],
     "no_such_key='1': unknown config key"),
    ('main', [QS, '--config.fl.batch_size=5000', '--workdir={out}'],
     'fl.batch_size=5000: larger than the smallest client (336 examples'),
    ('main', [QS, '--config.optim.base_lr=-1', '--workdir={out}'], 'optim.base_lr=-1.0: must be'),
    ('main', [QS, '--config.data.source=imagenet', '--workdir={out}'],
     "data.source='imagenet': unknown source kind"),
    ('main', [QS, '--workdir={file}'], "--workdir='{file}': exists and is not a directory"),
    ('main', ['--config=configs/quickstart.py:mode=bogus', '--workdir={out}'],
     "mode='bogus': unknown; choices"),
    ('main', [QS, '--config.fl.total_rounds=6', '--workdir={out}'],
     'fl.total_rounds=6: must be a positive multiple of the number of stages'),
    # Flags and config files.
    ('main', [QS, '--config.batch_size=3', '--workdir={out}'], "Did you mean 'fl.batch_size'?"),
    ('main', [QS, '--config.fl.batch_sise=3', '--workdir={out}'], "Did you mean 'fl.batch_size'?"),
    ('main', [QS, '--config.fl.batch_size=abc', '--workdir={out}'], '--config.fl.batch_size=abc'),
    ('main', ['--config=configs/nope.py', '--workdir={out}'], 'config file not found'),
    ('main', ['--config=configs/quickstart.py:mdoe=e2e', '--workdir={out}'],
     "Did you mean 'mode'?"),
    ('main', ['--config=configs/quickstart.py:method=moco', '--workdir={out}'],
     ":method='moco': unknown"),
    ('main', ['--config=configs/table2.py:row=fedvag', '--workdir={out}'], ":row='fedvag'"),
    ('main', [QS], '--workdir is required'),
    ('main', ['--workdir={out}'], '--config is required'),
    ('main', [QS, '--workdir={out}', 'extra'], "unexpected arguments ['extra']"),
    # Multi-process flags (distributed.py): refused before the runtime starts.
    ('main', [QS, '--workdir={out}', '--num_processes=2', '--process_id=0'],
     '--coordinator_address=None: a multi-process run needs all three'),
    ('main', [QS, '--workdir={out}', '--coordinator_address=localhost:1', '--num_processes=2',
              '--process_id=2'], '--process_id=2: must be in [0, 2)'),
    ('main', [QS, '--workdir={out}', '--coordinator_address=localhost', '--num_processes=2',
              '--process_id=0'], "--coordinator_address='localhost': must be 'host:port'"),
    ('main', [QS, '--workdir={out}', '--distributed', '--process_id=0'],
     '--distributed=True: detects the cluster itself'),
    # One per validated key family.
    ('main', [QS, '--config.seed=-1', '--workdir={out}'], 'seed=-1: must be an int >= 0'),
    ('main', [QS, '--config.blocks_per_stage=3', '--workdir={out}'],
     'blocks_per_stage=3: must divide the 4 blocks'),
    ('main', [QS, '--config.model.patch_size=5', '--workdir={out}'],
     'model.patch_size=5: must divide model.image_size=16'),
    ('main', [QS, '--config.model.num_heads=3', '--workdir={out}'],
     'model.num_heads=3: must divide model.width=64'),
    ('main', [QS, '--config.ssl.kwargs.temperature=0', '--workdir={out}'],
     'ssl.kwargs.temperature=0.0: must be > 0'),
    ('main', ['--config=configs/quickstart.py:method=byol', '--config.ssl.kwargs.temperature=0.1',
              '--workdir={out}'], 'ssl.kwargs.temperature'),
    ('main', [QS, '--config.data.partition=iid', '--workdir={out}'], "data.partition='iid'"),
    ('main', [QS, '--config.data.dirichlet_alpha=0', '--workdir={out}'],
     'data.dirichlet_alpha=0.0: must be a number > 0'),
    ('main', [QS, '--config.data.source=folder:/no/such/dir', '--workdir={out}'],
     '/no/such/dir lacks'),
    ('main', [QS, '--config.augment.flip_prob=1.5', '--workdir={out}'],
     'augment.flip_prob=1.5: probabilities must be in [0, 1]'),
    ('main', [QS, '--config.fl.clients_per_round=9', '--workdir={out}'],
     'fl.clients_per_round=9: must be <= fl.num_clients=4'),
    ('main', [QS, '--config.fl.local_epochs=0', '--workdir={out}'], 'fl.local_epochs=0'),
    ('main', [QS, '--config.fl.mesh_devices=64', '--workdir={out}'], 'fl.mesh_devices=64'),
    ('main', [QS, '--config.fl.algorithm=fedvag', '--workdir={out}'], "Did you mean 'fedavg'?"),
    ('main', [QS, '--config.fl.algorithm=fedca', '--workdir={out}'],
     'data.public_size=0: fl.algorithm=fedca needs a public set'),
    ('main', [QS, '--config.fl.algorithm=fedema', '--config.algorithms.fedema.tau=2',
              '--workdir={out}'], 'algorithms.fedema.tau=2.0: must be in (0, 1]'),
    ('main', [QS, '--config.server.optimizer=adamw', '--workdir={out}'],
     "server.optimizer='adamw': unknown"),
    ('main', [QS, '--config.server.aggregator=ldawa',
              '--config.aggregators.ldawa.warmup_rounds=-1', '--workdir={out}'],
     'aggregators.ldawa.warmup_rounds=-1'),
    ('main', [QS, '--config.eval.knn_k=0', '--workdir={out}'], 'eval.knn_k=0'),
    ('main', ['--config=configs/quickstart.py:mode=e2e', '--config.fl.depth_dropout=0.3',
              '--workdir={out}'], 'fl.depth_dropout=0.3: drops the blocks of earlier stages'),
    ('main', [QS, "--config.fl.addons=('moon',)", '--workdir={out}'], "fl.addons=('moon',)"),
    ('main', [QS, '--config.addons.ra.temperature=0', '--config.fl.addons=ra',
              '--workdir={out}'], 'addons.ra.temperature=0.0: must be > 0'),
    ('main', [QS, '--config.fl.dropout=1.0', '--workdir={out}'], 'fl.dropout=1.0'),
    # A field another backbone has: the message lists this backbone's fields.
    ('main', ['--config=configs/quickstart.py:model=resnet18', '--config.model.patch_size=4',
              '--workdir={out}'], "Keys under model in this config: ['model.image_size', "
     "'model.name', 'model.norm_groups', 'model.stem', 'model.width']"),
    ('main', ['--config=configs/quickstart.py:model=resnet18', '--config.model.stem=big',
              '--workdir={out}'], "model.stem='big': unknown; choices: ('cifar', 'imagenet')"),
    ('main', ['--config=configs/quickstart.py:model=resnet18', '--config.fl.depth_dropout=0.3',
              '--workdir={out}'], "blocks of model.name='resnet18' change the activation shape"),
    ('main', [QS, '--config.checkpoint.every_rounds=0', '--workdir={out}'],
     'checkpoint.every_rounds=0'),
    ('main', [QS, '--config.log.step_flops=sometimes', '--workdir={out}'],
     "log.step_flops='sometimes'"),
    # The other entry points.
    ('quickstart', ['--config.optim.base_lr=-1', '--workdir={out}'], 'optim.base_lr=-1.0'),
    ('quickstart', ['--config.no_such_key=1', '--workdir={out}'], 'unknown config key'),
    ('quickstart', ['--workdir={file}'], 'exists and is not a directory'),
    ('resources', [QS, '--modes=layerwise'], "--modes='layerwise': must start with e2e"),
    ('resources', [QS, '--config.accounting.outdir={file}'],
     "accounting.outdir='{file}': exists and is not a directory"),
    ('resources', [QS, '--config.accounting.examples_per_client=10'],
     'fl.batch_size=64: larger than the smallest client (10 examples'),
    ('resources', [QS, '--config.model.depth=0'], 'model.depth=0'),
    ('evaluate', ['--workdir={empty}'], 'no config.json there'),
    ('evaluate', ['--workdir={file}'], 'is not a directory'),
    ('evaluate', ['--workdir={run}', '--step=99'], '--step=99: no checkpoint at that step'),
    ('evaluate', ['--workdir={run}', '--step=abc'], '--step=abc'),
    ('evaluate', [], '--workdir is required'),
    ('export', ['--workdir={run}'], 'no checkpoints in'),
    ('export', ['--workdir={run}', '--out={file}/enc.npz'], "--out='{file}/enc.npz'"),
    ('compare', ['{empty}'], 'config.json'),
    ('compare', [], 'usage'),
]


@pytest.mark.parametrize('module, args, expected', CASES,
                         ids=[f'{m}:{" ".join(a)[-60:]}' for m, a, _ in CASES])
def test_mistake_is_one_line_with_status_2(paths, module, args, expected):
    args = [a.format(**paths) for a in args]
    expected = expected.format(**paths)
    status, out, err, seconds = _run(module, *args)
    assert status == 2, (status, out, err)
    assert 'Traceback' not in err + out
    errors = [l for l in err.splitlines() if l.startswith('error: ')]
    assert len(errors) == 1, err
    assert expected in errors[0], errors[0]
    assert seconds < 10, seconds


def test_debug_shows_the_traceback(paths):
    for env, args in (({'LWFEDSSL_DEBUG': '1'}, []), ({}, ['--debug'])):
        status, _, err, _ = _run('main', QS, '--config.optim.base_lr=-1',
                                 f'--workdir={paths["out"]}', *args, env=env)
        assert status == 1 and 'Traceback' in err and 'optim.base_lr=-1.0' in err


@pytest.mark.parametrize('module', ['main', 'quickstart', 'resources', 'evaluate',
                                    'export', 'compare'])
def test_help_starts_with_commands(module):
    status, out, err, _ = _run(module, '--help')
    assert status == 0, err
    lines = [l.strip() for l in out.splitlines()]
    commands = lines[2:4]       # after the title and a blank line
    assert all(c.startswith(f'python -m lwfedssl_jax.{module}') or
               c.startswith('python -m lwfedssl_jax.') for c in commands), lines[:5]
    assert lines[2].startswith(f'python -m lwfedssl_jax.{module}'), lines[:5]
