"""FedU, FedEMA and FedCA update rules against hand computations, and the
per-client state gather/scatter of the round."""

import jax
import jax.numpy as jnp
import numpy as np

from lwfedssl_jax.federated import algorithms
from lwfedssl_jax.federated.algorithms.base import ClientResult, ClientStart, Sent
from lwfedssl_jax.utils.tree import select

import test_client as tc   # noqa: E402  (tiny model helpers of the client tests)

SPEC = tc.stage('e2e', 0)


def make(name, **kwargs):
    return algorithms.get(name)(spec=SPEC, method=tc.METHOD, num_clients=3,
                                max_examples=4, rep_dim=8, **kwargs)


def shifted(tree, by):
    return jax.tree.map(lambda x: x + by, tree)


def trainable(seed=0):
    return select(tc.full_params(seed), SPEC.trainable)


def flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def test_fedema_first_participation_takes_the_global_model():
    algo = make('fedema', tau=0.7)
    state = algo.init_client(tc.full_params(1))
    received = trainable(0)
    start = algo.client_init(Sent(received, {}), state, received)
    jax.tree.map(np.testing.assert_array_equal, start.online, received)
    # The persistent target starts as a copy of the online encoder + projector.
    assert set(start.target) == set(SPEC.trainable) - {'predictor'}
    jax.tree.map(np.testing.assert_array_equal, start.target,
                 select(received, tuple(start.target)))


def test_fedema_distance_calibrates_then_blends_by_divergence():
    algo = make('fedema', tau=0.7, divergence='distance')
    local, glob = trainable(1), trainable(0)
    state = {**algo.init_client(tc.full_params(1)), 'online': local,
             'rounds': jnp.int32(1)}
    theta = [p for p in SPEC.trainable if p != 'predictor']
    d = np.linalg.norm(flat(select(local, theta)) - flat(select(glob, theta)))
    start = algo.client_init(Sent(glob, {}), state, glob)
    # First EMA round: lambda = tau / d, so mu = tau exactly.
    for p in SPEC.trainable:   # predictor blended too
        jax.tree.map(lambda o, l, g: np.testing.assert_allclose(
            o, 0.7 * l + 0.3 * g, rtol=1e-5, atol=1e-6), start.online[p], local[p], glob[p])
    _, new_state = algo.client_final(ClientResult(
        Sent(glob, {}), state, start, start.online, start.target, None))
    np.testing.assert_allclose(new_state['scale'], 0.7 / d, rtol=1e-5)
    np.testing.assert_allclose(new_state['mu'], 0.7, rtol=1e-5)
    # Later: lambda stays, mu = min(1, lambda * d'); here d' = 2 d -> mu = 1.
    far = jax.tree.map(lambda l, g: l + (l - g), local, glob)     # d' = 2 d
    state2 = {**new_state, 'online': far}
    start2 = algo.client_init(Sent(glob, {}), state2, glob)
    jax.tree.map(np.testing.assert_allclose, start2.online, far)
    # d' = d / 2 -> mu = tau / 2.
    near = jax.tree.map(lambda l, g: g + 0.5 * (l - g), local, glob)
    start3 = algo.client_init(Sent(glob, {}), {**new_state, 'online': near}, glob)
    jax.tree.map(lambda o, n, g: np.testing.assert_allclose(
        o, 0.35 * n + 0.65 * g, rtol=1e-5, atol=1e-6), start3.online, near, glob)
    # The persistent target is kept, not rebuilt.
    jax.tree.map(np.testing.assert_array_equal, start3.target, new_state['target'])


def test_fedema_drift_uses_the_previous_rounds_change():
    algo = make('fedema', tau=0.5)            # divergence='drift' (authors' code)
    local, glob = trainable(1), trainable(0)
    state = {**algo.init_client(tc.full_params(1)), 'online': local,
             'rounds': jnp.int32(1), 'drift': jnp.float32(0.2)}
    start = algo.client_init(Sent(glob, {}), state, glob)
    jax.tree.map(lambda o, l, g: np.testing.assert_allclose(
        o, 0.5 * l + 0.5 * g, rtol=1e-5, atol=1e-6), start.online, local, glob)
    np.testing.assert_allclose(start.notes['scale'], 0.5 / 0.2, rtol=1e-6)
    # Later rounds: mu = min(1, lambda * drift): drift 0.1 -> 0.25, 0.6 -> 1.
    for drift, mu in [(0.1, 0.25), (0.6, 1.0)]:
        later = {**state, 'scale': jnp.float32(2.5), 'drift': jnp.float32(drift)}
        np.testing.assert_allclose(
            algo.client_init(Sent(glob, {}), later, glob).notes['mu'], mu, rtol=1e-6)
    # client_final stores this round's drift: mean norm of the encoder weight change.
    end = shifted(start.online, 0.5)
    _, new = algo.client_final(ClientResult(Sent(glob, {}), state, start, end,
                                            start.target, None))
    sizes = [x.size for p in SPEC.trainable if p not in tc.METHOD.head_names
             for x in jax.tree.leaves(glob[p]) if x.ndim >= 2]
    np.testing.assert_allclose(new['drift'], np.mean([0.5 * np.sqrt(n) for n in sizes]),
                               rtol=1e-5)
    np.testing.assert_allclose(new['mu'], 0.5, rtol=1e-6)


def test_fedu_keeps_local_predictor_only_when_divergence_is_high():
    algo = make('fedu', threshold=1.0, relative=True)
    local, glob = trainable(1), trainable(0)
    base = {**algo.init_client(tc.full_params(1)), 'online': local, 'rounds': jnp.int32(3),
            'reference': jnp.float32(2.0)}
    for divergence, keep in [(2.5, True), (2.0, True), (1.5, False)]:
        start = algo.client_init(Sent(glob, {}), {**base, 'divergence': jnp.float32(divergence)},
                                 glob)
        want = local['predictor'] if keep else glob['predictor']
        jax.tree.map(np.testing.assert_array_equal, start.online['predictor'], want)
        for p in SPEC.trainable:      # encoder and projector: always the global ones
            if p != 'predictor':
                jax.tree.map(np.testing.assert_array_equal, start.online[p], glob[p])


def test_fedu_divergence_is_mean_norm_of_encoder_weight_change():
    algo = make('fedu')
    start_online = trainable(0)
    end = shifted(start_online, 0.5)
    state = algo.init_client(tc.full_params(0))
    _, new = algo.client_final(ClientResult(Sent({}, {}), state,
                                            ClientStart(start_online, None), end, None, None))
    # >= 2-D leaves of the encoder parts only (no heads): each moved by 0.5 per entry.
    sizes = [x.size for p in SPEC.trainable if p not in tc.METHOD.head_names
             for x in jax.tree.leaves(start_online[p]) if x.ndim >= 2]
    want = np.mean([0.5 * np.sqrt(n) for n in sizes])
    np.testing.assert_allclose(new['divergence'], want, rtol=1e-5)
    np.testing.assert_allclose(new['reference'], want, rtol=1e-5)   # first round
    assert int(new['rounds']) == 1


def test_fedca_dictionary_scatter_and_negatives():
    algo = make('fedca', align_weight=0.0)
    extras = algo.init_server(tc.full_params())
    assert extras['features'].shape == (3, 4, 8) and not extras['valid'].any()
    uploaded = {'features': jnp.arange(2 * 4 * 8, dtype=jnp.float32).reshape(2, 4, 8),
                'valid': jnp.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)}
    new = algo.server_update(extras, uploaded, jnp.array([2, 0]), jnp.array([5.0, 0.0]))
    np.testing.assert_array_equal(new['features'][2], uploaded['features'][0])
    np.testing.assert_array_equal(new['features'][0], uploaded['features'][1])
    np.testing.assert_array_equal(new['features'][1], 0)
    # Client 0 had weight 0 (did not report): its rows are not valid negatives.
    np.testing.assert_array_equal(new['valid'], [[0] * 4, [0] * 4, [1, 1, 1, 0]])
    ctx = algo.client_context(Sent({}, algo.broadcast(new)), {}, tc.NO_PUBLIC)
    assert ctx.negatives.features.shape == (12, 8)
    np.testing.assert_array_equal(ctx.negatives.mask, np.ravel(new['valid']))


def test_round_updates_only_the_participants_state():
    spec = tc.stage('e2e', 0)
    round_fn, state, frozen = tc.make_round(spec, algorithm='fedema', n_max=8,
                                            batch_size=4, epochs=1)
    data = tc.images(4 * 8).reshape(4, 8, 8, 8, 3)
    new, _, _ = tc.run_round(round_fn, state, frozen, data, [8] * 4, [1, 3])
    np.testing.assert_array_equal(new.clients['rounds'], [0, 1, 0, 1])
    for c in (0, 2):   # untouched slices are bit-identical
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[c], b[c]),
                     new.clients, state.clients)
    # A participant's stored online model is what it uploaded.
    _, uploads, _ = tc.run_round(round_fn, state, frozen, data, [8] * 4, [1, 3])
    jax.tree.map(lambda s, u: np.testing.assert_array_equal(s[3], u[1]),
                 new.clients['online'], uploads.params)
