"""Two processes on localhost train one run through `jax.distributed`.

Each process has 2 CPU devices; the client mesh spans all 4, so each process
trains its share of the round's 3 participants (padded to 4). The run must
match the same run in one process with 4 devices, and after one process is
killed mid-run, both must resume together and finish as if uninterrupted.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from lwfedssl_jax import run_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ['--config', 'configs/quickstart.py:mode=layerwise,smoke=True',
        '--config.fl.total_rounds=4', '--config.fl.mesh_devices=-1',
        '--config.fl.client_execution=vmap', '--config.eval.at_stage_end=False']
TIMEOUT = 600


def _env(devices: int) -> dict:
    return {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}',
            'JAX_PLATFORMS': 'cpu'}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('localhost', 0))
        return s.getsockname()[1]


def _start(workdir) -> list:
    """Both processes of one launch (process 0 hosts the coordinator)."""
    port = _free_port()
    return [subprocess.Popen(
        [sys.executable, '-m', 'lwfedssl_jax.main', *ARGS, '--workdir', str(workdir),
         f'--coordinator_address=localhost:{port}', '--num_processes=2',
         f'--process_id={i}'], cwd=REPO, env=_env(2), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True) for i in range(2)]


def _finish(procs) -> None:
    for i, p in enumerate(procs):
        out, _ = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0, f'process {i} failed:\n{out[-3000:]}'


def _rounds(workdir) -> list:
    lines = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]
    return [(l['step'], l['loss'], l['client_loss']) for l in lines
            if l['kind'] == 'round']


@pytest.fixture(scope='module')
def two_process_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp('two')
    _finish(_start(workdir))
    return str(workdir)


def test_two_processes_match_one_process(two_process_run, tmp_path):
    one = subprocess.run([sys.executable, '-m', 'lwfedssl_jax.main', *ARGS,
                          '--workdir', str(tmp_path)], cwd=REPO, env=_env(4),
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    params = run_dir.restore(two_process_run)[3]
    ref = run_dir.restore(str(tmp_path))[3]
    # The same SPMD program; only the cross-process all-reduce may sum in
    # another order. Parameters whose gradient is zero by symmetry get
    # round-off gradients that Adam scales to +-lr: the attention key bias
    # (softmax is shift-invariant) and the bias of the norm feeding the
    # projector's bias-free Linear + BatchNorm. The rest agrees closely.
    for path, a in jax.tree_util.tree_leaves_with_path(params):
        name = jax.tree_util.keystr(path)
        if "['key']['bias']" in name or name == "['norm']['bias']":
            continue
        b = ref
        for k in path:
            b = b[k.key]
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=name)
    two, single = _rounds(two_process_run), _rounds(str(tmp_path))
    assert [s for s, *_ in two] == [1, 2, 3, 4]
    np.testing.assert_allclose([l for _, l, _ in two], [l for _, l, _ in single],
                               rtol=1e-5)
    # Process 0 alone wrote the run's files: one line per round, one summary.
    assert len(two) == 4 and os.path.exists(os.path.join(two_process_run, 'summary.json'))


def test_both_resume_after_one_is_killed(two_process_run, tmp_path):
    procs = _start(tmp_path)
    metrics, deadline = tmp_path / 'metrics.jsonl', time.time() + TIMEOUT
    while time.time() < deadline and procs[1].poll() is None:
        if metrics.exists() and metrics.read_text().count('"kind": "round"') >= 3:
            procs[1].send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert procs[1].wait(TIMEOUT) == -signal.SIGKILL, 'process 1 finished before the kill'
    # Process 0 now waits on its peer inside a collective: stop it too.
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait(TIMEOUT)
    assert not (tmp_path / 'summary.json').exists()
    _finish(_start(tmp_path))
    jax.tree.map(np.testing.assert_array_equal, run_dir.restore(str(tmp_path))[3],
                 run_dir.restore(two_process_run)[3])
    assert _rounds(str(tmp_path)) == _rounds(two_process_run)
