"""Loss add-ons (PA, RA), client dropout and the divergence of a round,
each against a hand computation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import test_client as tc   # noqa: E402  (tests/federated/test_client.py)
from lwfedssl_jax.federated import addons
from lwfedssl_jax.federated.algorithms.base import StepContext, TermInputs
from lwfedssl_jax.federated.round import client_divergence


def _spec():
    return tc.stage('layerwise', 1)


def test_pa_is_half_mu_squared_distance_to_the_received_parts():
    spec = _spec()   # trains block_01, norm, projector, predictor; all exchanged
    params = tc.full_params()
    online = {p: params[p] for p in spec.trainable}
    anchor = jax.tree.map(lambda x: x + 0.5, online)     # every entry 0.5 away
    pa = addons.make_pa(spec=spec, mu=0.3)
    loss, metrics = pa.term(TermInputs(online, anchor, None, StepContext(), None), {})
    count = sum(x.size for x in jax.tree.leaves(online))
    np.testing.assert_allclose(loss, 0.5 * 0.3 * 0.25 * count, rtol=1e-5)
    grad = jax.grad(lambda o: pa.term(TermInputs(o, anchor, None, StepContext(), None),
                                      {})[0])(online)
    # d/dw mu/2 (w - g)^2 = mu (w - g) = -0.15 everywhere.
    for g in jax.tree.leaves(grad):
        np.testing.assert_allclose(g, -0.15, rtol=1e-5)


def test_pa_skips_parts_that_never_travel():
    spec = _spec()
    spec = dataclasses.replace(spec, exchanged=tuple(p for p in spec.exchanged
                                                     if p != 'predictor'))
    params = tc.full_params()
    online = {p: params[p] for p in spec.trainable}
    anchor = {p: jax.tree.map(lambda x: x + 1.0, online[p]) for p in spec.exchanged}
    loss, _ = addons.make_pa(spec=spec, mu=2.0).term(
        TermInputs(online, anchor, None, StepContext(), None), {})
    count = sum(x.size for p in spec.exchanged for x in jax.tree.leaves(online[p]))
    np.testing.assert_allclose(loss, count, rtol=1e-5)   # 2/2 * 1^2 per entry


def _numpy_moon(z, zg, zp, tau):
    unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)
    z, zg, zp = unit(z), unit(zg), unit(zp)
    pos, neg = np.sum(z * zg, -1) / tau, np.sum(z * zp, -1) / tau
    return np.mean(-pos + np.log(np.exp(pos) + np.exp(neg)))


def test_ra_is_moons_model_contrastive_loss():
    spec = _spec()
    rng = np.random.default_rng(0)
    # project_view maps "parameters" to fixed representations: the online,
    # global and previous models are told apart by a marker entry.
    reps = {0.0: rng.normal(size=(5, 8)), 1.0: rng.normal(size=(5, 8)),
            2.0: rng.normal(size=(5, 8))}
    table = jnp.asarray(np.stack([reps[0.0], reps[1.0], reps[2.0]]))

    def project_view(p):
        return table[p['norm']['marker'].astype(jnp.int32)]

    online = {p: {'marker': jnp.float32(0.0)} for p in spec.trainable}
    anchor = {p: {'marker': jnp.float32(1.0)} for p in spec.exchanged}
    ra = addons.make_ra(spec=spec, mu=0.7, temperature=0.5)
    state = {'previous': {p: {'marker': jnp.float32(2.0)} for p in spec.trainable},
             'has_previous': jnp.float32(1.0)}
    inputs = TermInputs(online, anchor, None, StepContext(), None, project_view)
    loss, _ = ra.term(inputs, state)
    np.testing.assert_allclose(loss, 0.7 * _numpy_moon(reps[0.0], reps[1.0], reps[2.0], 0.5),
                               rtol=1e-5)
    # A client's first round of a stage has no previous model: no term.
    first, _ = ra.term(inputs, {**state, 'has_previous': jnp.float32(0.0)})
    assert float(first) == 0.0


def test_ra_state_is_the_model_after_the_round():
    spec = _spec()
    round_fn, state, frozen = tc.make_round(spec, addon_kwargs={'ra': {'mu': 1.0}})
    data = tc.images(64).reshape(4, 16, 8, 8, 3)
    assert float(state.clients['addons']['ra']['has_previous'].sum()) == 0
    new, uploads, _ = tc.run_round(round_fn, state, frozen, data, [16] * 4, [1, 3])
    ra_state = new.clients['addons']['ra']
    np.testing.assert_array_equal(ra_state['has_previous'], [0, 1, 0, 1])
    # Client 3's previous model is what it uploaded (all its trained parts travel).
    for p in spec.exchanged:
        jax.tree.map(lambda s, u: np.testing.assert_array_equal(s[3], u[1]),
                     ra_state['previous'][p], uploads.params[p])


def test_dropped_clients_are_left_out_and_weights_renormalised():
    spec = _spec()
    round_fn, state, frozen = tc.make_round(spec, algorithm='fedema', n_max=16)
    data = tc.images(64).reshape(4, 16, 8, 8, 3)
    sizes = [16, 8, 12, 4]
    new, uploads, _ = tc.run_round(round_fn, state, frozen, data, sizes, [0, 1, 2],
                                   reported=[True, False, True])
    w = np.array([16, 0, 12], np.float64)
    for p in spec.exchanged:
        jax.tree.map(lambda g, u: np.testing.assert_allclose(
            g, np.tensordot(w / w.sum(), np.asarray(u, np.float64), axes=1),
            rtol=1e-5, atol=1e-6), new.server.params[p], uploads.params[p])
    # The dropped client's (1) and the absent client's (3) states are untouched.
    for c in (1, 3):
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[c], b[c]),
                     new.clients, state.clients)
    changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a[0] != b[0])),
                                           new.clients, state.clients))
    assert any(changed)


def test_a_round_where_nobody_reports_leaves_everything_unchanged():
    spec = _spec()
    round_fn, state, frozen = tc.make_round(spec)
    data = tc.images(64).reshape(4, 16, 8, 8, 3)
    new, _, metrics = tc.run_round(round_fn, state, frozen, data, [16] * 4, [0, 2],
                                   reported=[False, False])
    jax.tree.map(np.testing.assert_array_equal, new, state)
    assert float(metrics['divergence']) == 0.0
    assert round_fn.num_traces == 1
    tc.run_round(round_fn, state, frozen, data, [16] * 4, [1, 2], reported=[True, False])
    assert round_fn.num_traces == 1   # who reports never changes a compiled shape


def test_divergence_is_the_mean_distance_of_one_reporting_client_to_the_others():
    a = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0], [100.0, 100.0]], np.float32)
    uploaded = {'w': jnp.asarray(a[:, :1]), 'v': {'x': jnp.asarray(a[:, 1:])}}
    reported = jnp.asarray([True, True, True, False])
    # Client 3 did not report: it is never chosen nor compared. Distances are
    # per-parameter RMS over a model of 8 parameters (6 frozen, equal for all).
    expected = {0: (5 + 10) / 2, 1: (5 + 5) / 2, 2: (10 + 5) / 2}
    seen = set()
    for k in range(20):
        d = float(client_divergence(uploaded, reported, jax.random.key(k), 8)) * np.sqrt(8)
        assert any(abs(d - v) < 1e-4 for v in expected.values()), d
        seen.add(round(d, 3))
    assert len(seen) == 2          # 7.5 and 5.0: more than one client gets chosen
    two = jnp.asarray([False, True, False, True])
    np.testing.assert_allclose(client_divergence(uploaded, two, jax.random.key(0), 2),
                               np.linalg.norm(a[1] - a[3]) / np.sqrt(2), rtol=1e-6)


def test_unknown_addon_is_refused():
    with pytest.raises(ValueError, match=r"fl.addons=\('moon',\).*'moon' is unknown"):
        addons.make_addons(('moon',), _spec(), {})


def test_partial_participation_with_dropout_compiles_once_per_stage(tmp_path):
    from configs import tables6_8
    from lwfedssl_jax import train
    config = tables6_8.get_config('row=part25_lw,scale=smoke')
    config.unlock()
    config.fl.dropout = 0.5
    summary = train.run(config, str(tmp_path))
    assert config.fl.num_clients == 100 and config.fl.clients_per_round == 25
    assert [r['round_fn_traces'] for r in summary['stages']] == [1, 1]
    import json
    lines = [json.loads(l) for l in open(tmp_path / 'metrics.jsonl')]
    reported = [l['reported'] for l in lines if l['kind'] == 'round']
    assert [len(r) for r in reported] == [25, 25]
    assert all(0 < sum(r) < 25 for r in reported)   # about half reported each round
