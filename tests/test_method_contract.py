"""Contract of every registered SSL method x training mode (registry-driven:
a new entry of `ssl.METHODS` or `stages.MODES` is covered without edits)."""

import pytest

from configs import quickstart
from lwfedssl_jax import ssl, stages

import contract_run   # noqa: E402  (tests/contract_run.py)


@pytest.mark.parametrize('mode', stages.MODES)
@pytest.mark.parametrize('method', sorted(ssl.METHODS))
def test_method_mode_runs_and_keeps_the_contract(method, mode, tmp_path, monkeypatch):
    c = quickstart.get_config(f'method={method},mode={mode},smoke=True')
    c.fl.total_rounds = 2            # layer-wise / progressive: 2 stages x 1 round
    c.eval.at_stage_end = False
    c.eval.probe_epochs = 1
    summary = contract_run.check_run(c, str(tmp_path), monkeypatch)
    assert summary['ssl_method'] == method
