"""Contract of every registered federated algorithm, aggregator and server
optimiser (registry-driven: new entries are covered without edits)."""

import pytest

from configs import quickstart
from lwfedssl_jax import builders, ssl
from lwfedssl_jax.federated import aggregate, algorithms

import contract_run   # noqa: E402  (tests/contract_run.py)


def smoke(method='mocov3', mode='e2e'):
    c = quickstart.get_config(f'method={method},mode={mode},smoke=True')
    c.fl.total_rounds = 4
    c.fl.clients_per_round = 2        # partial participation: state gather/scatter
    c.eval.at_stage_end = False
    c.eval.probe_epochs = 1
    c.data.public_size = 16
    c.data.public_base_epochs = 1
    return c


def compatible_method(algorithm):
    """The first registered SSL method the algorithm accepts."""
    for method in sorted(ssl.METHODS):
        c = smoke(method)
        c.fl.algorithm = algorithm
        try:
            builders.build(c)
            return method
        except ValueError:
            continue
    raise AssertionError(f'no SSL method works with {algorithm}')


@pytest.mark.parametrize('algorithm', sorted(algorithms.ALGORITHMS))
def test_algorithm_runs_and_keeps_the_contract(algorithm, tmp_path, monkeypatch):
    # Layer-wise: 2 stages x 2 rounds, so state restarts at a stage boundary
    # and every client state is used again within a stage.
    c = smoke(compatible_method(algorithm), 'layerwise')
    c.fl.total_rounds = 4
    c.fl.algorithm = algorithm
    summary = contract_run.check_run(c, str(tmp_path), monkeypatch)
    assert summary['fl_algorithm'] == algorithm


@pytest.mark.parametrize('aggregator', sorted(aggregate.AGGREGATORS))
def test_aggregator_runs_and_keeps_the_contract(aggregator, tmp_path, monkeypatch):
    c = smoke(mode='layerwise')
    c.server.aggregator = aggregator
    contract_run.check_run(c, str(tmp_path), monkeypatch)


@pytest.mark.parametrize('optimizer', aggregate.SERVER_OPTIMIZERS)
def test_server_optimizer_runs_and_keeps_the_contract(optimizer, tmp_path, monkeypatch):
    c = smoke(mode='layerwise')
    c.server.optimizer = optimizer
    c.server.learning_rate = 1.0 if optimizer != 'adam' else 1e-3
    contract_run.check_run(c, str(tmp_path), monkeypatch)
