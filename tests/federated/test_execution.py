"""Client execution 'auto' (federated/execution.py, builders.resolve_client_chunk):
the chunk chosen from a memory budget, checked against the compiled memory
of every candidate chunk; its round equals 'vmap' and 'map'; a budget too
small for one client; the validator's checks of the keys."""

import math
import re

import jax
import ml_collections
import numpy as np
import pytest

from configs import quickstart
from lwfedssl_jax import builders, public_set, round_draws, train
from lwfedssl_jax.errors import ConfigError, ConfigErrors
from lwfedssl_jax.federated import execution
from lwfedssl_jax.utils.tree import select
from lwfedssl_jax.validation import check_config

K = 4   # clients per round (all clients take part)


# ----------------------------------------------------- the search, no compiles
def _counted(fn):
    calls = []

    def memory_of(c):
        calls.append(c)
        return fn(c)
    return memory_of, calls


def test_affine_memory_extrapolates_from_two_compiles_and_balances():
    # m(c) = 1000 + 10 c, budget 1375: the first candidate is 1 + 365 // (0.8 x
    # 10) = 46 (3 passes over 100 clients), balanced to 34 (34 + 34 + 32);
    # m(34) = 1340 fits. The largest c that fits, 37, also takes 3 passes.
    memory_of, calls = _counted(lambda c: 1000 + 10 * c)
    choice = execution.choose_chunk(memory_of, 100, 1375)
    assert (choice.chunk, choice.estimated_bytes) == (34, 1340)
    assert calls == [1, 2, 34]
    # A budget for every client: vmap.
    choice = execution.choose_chunk(lambda c: 1000 + 10 * c, 100, 10**6)
    assert choice.chunk == 100 and execution.for_chunk(100, 100) == ('vmap', 0)


def test_superlinear_memory_steps_down_until_it_fits():
    # m(c) = 100 + 10 c + c^2, budget 400, 30 clients. m(1) = 111, m(2) = 124:
    # the first candidate is 1 + 289 // (0.8 x 13) = 28, balanced to 15 (2
    # passes); m(15) = 475 > 400. The line through the largest fitting chunk
    # (2, 124) and (15, 475) (slope 27) says 2 + 276 // 27 = 12, balanced to 10
    # (3 passes); m(10) = 300 fits. The largest c that fits is 13 (m = 399;
    # m(14) = 436), also 3 passes.
    fn = lambda c: 100 + 10 * c + c * c
    memory_of, calls = _counted(fn)
    choice = execution.choose_chunk(memory_of, 30, 400)
    assert calls == [1, 2, 15, 10]
    assert choice.chunk == 10 and fn(10) <= 400
    assert math.ceil(30 / 10) == math.ceil(30 / 13)


def test_sequential_compiles_one_client_only():
    memory_of, calls = _counted(lambda c: 1000 + 10 * c)
    assert execution.choose_chunk(memory_of, 100, 1375, sequential=True).chunk == 1
    assert calls == [1]


def test_budget_from_key_and_from_the_device():
    assert execution.memory_budget(1.5)[0] == int(1.5 * 2**30)
    budget, source = execution.memory_budget(0.0)
    # CPU: no bytes_limit; the host's available memory, read independently.
    with open('/proc/meminfo') as f:
        avail = [int(x.split()[1]) * 1024 for x in f if x.startswith('MemAvailable:')][0]
    assert 'MemAvailable' in source
    assert abs(budget - execution.SAFETY_FRACTION * avail) < 0.05 * avail


# ------------------------------------------- the real round of a tiny config
def _config(execution_='auto', budget=0.0, chunk=0) -> ml_collections.ConfigDict:
    c = quickstart.get_config('smoke=True,mode=layerwise')
    c.fl.num_clients = c.fl.clients_per_round = K
    c.fl.client_execution, c.fl.client_chunk = execution_, chunk
    c.fl.memory_budget_gib = budget
    return c


@pytest.fixture(scope='module')
def stage():
    """The first stage's setup, data and round arguments (real arrays)."""
    config = _config()
    setup = builders.build(config)
    _, fed, public_images = builders.load_data(config)
    public = public_set.public_reference(setup, config, public_images)
    spec = setup.plan[0]
    params = builders.init_new_parts(setup, {}, spec, config.seed)
    fns = builders.build_stage(setup, spec, config, fed.num_clients, fed.max_examples)
    state = builders.init_round_state(setup, fns, spec, params, fed.num_clients)
    frozen = select(params, spec.frozen)
    return dict(setup=setup, fed=fed, public=public, spec=spec, fns=fns, state=state,
                frozen=frozen)


@pytest.fixture(scope='module')
def memory_table(stage):
    """`{chunk: bytes}` of the compiled round at every chunk 1..K, measured on a
    second code path (`xla_cost.compiled_cost` of the 'chunked' round)."""
    from lwfedssl_jax.accounting.xla_cost import compiled_cost
    s, table = stage, {}
    for c in range(1, K + 1):
        how = {1: ('map', 0), K: ('vmap', 0)}.get(c, ('chunked', c))
        fns = builders.build_stage(s['setup'], s['spec'], _config(*how[:1], 0.0, how[1]),
                                   s['fed'].num_clients, s['fed'].max_examples)
        table[c] = compiled_cost(fns.round_fn.jitted, *_args(s)).memory_bytes
    return table


def _args(s, r=0):
    config = _config()
    return (s['frozen'], s['state'], s['fed'].images, s['fed'].sizes,
            round_draws.round_clients(config, 0, r, K), round_draws.round_reports(config, 0, r),
            np.int32(r), np.int32(r), jax.random.fold_in(jax.random.key(0), r),
            s['public'])


def _resolve(s, budget_gib, platform='gpu'):
    return builders.resolve_client_chunk(
        s['setup'], s['spec'], _config('auto', budget_gib), s['fns'], s['frozen'],
        s['state'], s['fed'].images, s['fed'].sizes, s['public'], platform=platform)


def test_memory_grows_with_the_chunk(memory_table):
    m = memory_table
    assert m[1] < m[2] < m[3] < m[4], m


@pytest.mark.parametrize('between', [(2, 3), (3, 4), (4, None)])
def test_chosen_chunk_is_the_largest_that_fits_balanced(stage, memory_table, between):
    # Budget just above m(lo): the largest fitting chunk is lo; by hand, K = 4
    # clients in chunks of 3 take 2 passes, as chunks of 2 do: 3 -> 2.
    m, lo = memory_table, between[0]
    budget = m[lo] + 1024
    assert between[1] is None or budget < m[between[1]]
    fns = _resolve(stage, budget / 2**30)
    expected = {2: 2, 3: 2, 4: 4}[lo]
    assert fns.client_chunk.chunk == expected
    assert fns.client_chunk.estimated_bytes == m[expected]
    assert fns.client_chunk.budget_bytes == int(budget / 2**30 * 2**30)
    assert {c: m[c] for c in fns.client_chunk.measured} == fns.client_chunk.measured


def test_auto_round_equals_vmap_and_map_and_compiles_once(stage, memory_table):
    s, m = stage, memory_table
    results = {}
    for name in ('vmap', 'map'):
        fns = builders.build_stage(s['setup'], s['spec'], _config(name),
                                   s['fed'].num_clients, s['fed'].max_examples)
        results[name] = fns.round_fn(*_args(s, 1))
    # A budget between m(2) and m(3) gives chunk 2: a real 'chunked' round.
    fns = _resolve(s, (m[2] + m[3]) / 2 / 2**30)
    assert fns.client_chunk.chunk == 2
    results['auto'] = fns.round_fn(*_args(s, 1))
    assert fns.round_fn.num_traces == 1    # the verified compile is the one that runs
    # Two parameters have an exactly-zero gradient: the attention key bias
    # (it adds the same q.b to every logit of a query; softmax ignores it) and
    # the final norm's bias (a constant shift before the projector's batch
    # norm). Adam turns their op-order noise (which differs between 'map' and
    # vmapped chunks) into +-lr updates, so they are left out; everything else,
    # losses and steps included, agrees to float32 round-off.
    noise_only = ("['key']['bias']", "['norm']['bias']")
    auto = jax.tree_util.tree_flatten_with_path(results['auto'])[0]
    compared = 0
    for name in ('vmap', 'map'):
        for (path, a), b in zip(auto, jax.tree.leaves(results[name])):
            where = jax.tree_util.keystr(path)
            if not where.endswith(noise_only):
                np.testing.assert_allclose(np.asarray(a, np.float64),
                                           np.asarray(b, np.float64), rtol=1e-4,
                                           atol=1e-6, err_msg=f'{name} {where}')
                compared += 1
    assert compared > 20


def test_on_cpu_auto_runs_clients_sequentially(stage, memory_table):
    fns = _resolve(stage, 100.0, platform=None)   # this test machine: CPU
    assert jax.default_backend() == 'cpu'
    assert fns.client_chunk.chunk == 1 and list(fns.client_chunk.measured) == [1]
    assert fns.client_chunk.estimated_bytes == memory_table[1]


def test_budget_too_small_for_one_client(stage, memory_table):
    budget = (memory_table[1] - 4096) / 2**30
    with pytest.raises(ConfigError) as info:
        _resolve(stage, budget)
    assert info.value.key == 'fl.memory_budget_gib'
    assert f'needs {memory_table[1]:,} bytes' in str(info.value)


def test_unresolved_auto_round_has_the_round_shapes(stage):
    # What resources.py evaluates without resolving: the same shapes as 'map'.
    s = stage
    fns = builders.build_stage(s['setup'], s['spec'], _config('map'), K,
                               s['fed'].max_examples)
    shapes = lambda f: jax.tree.map(lambda x: (x.shape, x.dtype),
                                    jax.eval_shape(f.round_fn.jitted, *_args(s)))
    assert shapes(s['fns']) == shapes(fns)


def test_other_executions_pass_through(stage):
    s = stage
    config = _config('map')
    fns = builders.build_stage(s['setup'], s['spec'], config, K, s['fed'].max_examples)
    same = builders.resolve_client_chunk(s['setup'], s['spec'], config, fns, s['frozen'],
                                         s['state'], s['fed'].images, s['fed'].sizes,
                                         s['public'])
    assert same is fns and same.client_chunk is None


# ------------------------------------------------------------- the validator
@pytest.mark.parametrize('execution_, budget, chunk, key, match', [
    ('autoo', 0.0, 0, 'fl.client_execution', r"unknown; choices: \[.*'auto'"),
    ('auto', -1.0, 0, 'fl.memory_budget_gib', r'must be a number >= 0'),
    ('auto', 0.0, 3, 'fl.client_chunk', r"'auto' chooses the chunk itself"),
    ('map', 2.0, 0, 'fl.memory_budget_gib', r"used only by fl.client_execution='auto'"),
])
def test_validator_rejects(execution_, budget, chunk, key, match):
    with pytest.raises(ConfigErrors) as info:
        check_config(_config(execution_, budget, chunk))
    named = [e for e in info.value.errors if e.key == key]
    assert named, str(info.value)
    assert re.search(match, str(named[0])), str(named[0])


def test_validator_accepts_auto():
    check_config(_config('auto', 0.0))
    check_config(_config('auto', 3.5))


# ---------------------------------------------------------- in a training run
def test_training_run_records_the_choice_per_stage(tmp_path, capsys):
    config = _config('auto')
    config.checkpoint.enabled = False
    config.eval.at_stage_end = False
    summary = train.run(config, str(tmp_path))
    out = capsys.readouterr().out
    stages = summary['stages']
    assert len(stages) == 2                       # smoke ViT: 2 blocks, layer-wise
    for row in stages:
        # CPU: clients one after another; the verified compile is the one run.
        assert row['client_chunk'] == 1 and row['round_fn_traces'] == 1
        assert 0 < row['client_chunk_bytes'] < row['memory_budget_bytes']
        assert (f"stage {row['stage'] + 1}: client chunk 1 of {K} (map; "
                'fl.client_execution=auto)') in out
    # The second stage trains one block on a frozen one: its round is not the
    # first stage's (each stage measures its own).
    assert stages[0]['client_chunk_bytes'] != stages[1]['client_chunk_bytes']
