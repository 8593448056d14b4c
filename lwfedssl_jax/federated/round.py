"""One federated round as a single jitted function (built once per stage).

The round's evolving state is a `RoundState`: the server's exchanged
parameters, its optimiser state and algorithm extras, and every client's
persistent state with a leading `[N]` client axis. The K participants'
slices are gathered by index and scattered back inside the jitted round, so
which clients take part never changes a compiled shape.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from lwfedssl_jax import sharding
from lwfedssl_jax.federated.aggregate import Aggregator, ServerUpdate
from lwfedssl_jax.federated.algorithms.base import FederatedAlgorithm, Sent


DIVERGENCE_KEY = 2**31 - 1   # fold_in index of the divergence's client choice


class ServerState(NamedTuple):
    """The server side of a round state.

    Attributes:
      params: the exchanged parts (the global model that is sent down).
      opt_state: the server optimiser's state (`()` without one).
      extras: the algorithm's server extras (`{}` for most).
    """
    params: dict
    opt_state: Any
    extras: Any


class RoundState(NamedTuple):
    """Everything that evolves from round to round within a stage.

    Attributes:
      server: the `ServerState`.
      clients: the algorithm's per-client state, leaves `[N, ...]`.
    """
    server: ServerState
    clients: Any


def init_round_state(algorithm: FederatedAlgorithm, server_update: ServerUpdate,
                     params: dict, exchanged_parts, num_clients: int) -> RoundState:
    """The state at the start of a stage.

    Args:
      params: every present part, as the server initialised/holds them.
      exchanged_parts: the stage's exchanged part names.
      num_clients: N; each client starts from the same `init_client(params)`.
    """
    exchanged = {p: params[p] for p in exchanged_parts}
    one = algorithm.init_client(params)
    clients = jax.tree.map(
        lambda x: jnp.tile(jnp.asarray(x)[None], (num_clients,) + (1,) * jnp.ndim(x)),
        one)
    return RoundState(ServerState(exchanged, server_update.init(exchanged),
                                  algorithm.init_server(params)), clients)


def sent_of(algorithm: FederatedAlgorithm, server: ServerState) -> Sent:
    """What the server sends each participant: the exchanged parts + extras."""
    return Sent(server.params, algorithm.broadcast(server.extras))


class RoundFunction:
    """A jitted round that counts its traces (tests assert 1 per stage).

    Call as `round_fn(frozen, state, images, sizes, selected, reported,
    round_index, round_in_stage, key, public)` -> `(state, uploads, metrics)`:
      frozen: present parts that stay on the clients (never sent).
      state: the `RoundState` before the round.
      images: `[N, N_max, H, W, 3]` uint8, every client's padded data.
      sizes: `[N]` int32 example counts.
      selected: `[K]` int32 ids of this round's participating clients.
      reported: `[K]` bool, which of them report back (client dropout,
        `fl.dropout`): the others' uploads are ignored, the aggregation
        weights renormalised over those that reported, and their state is
        left as it was (a dropped client failed mid-round). If nobody
        reports, the server state is unchanged. A mask, not a reshape: how
        many report never changes a compiled shape.
      round_index: global 0-based round (int32; momentum schedule).
      round_in_stage: 0-based round within the stage (int32; aggregators
        with a warm-up).
      key: the round key; client c trains with `fold_in(key, c)`.
      public: the server's `PublicData` (empty arrays when unused).
    Returns the new `RoundState`, the stacked uploads (an `Upload` with
    leaves `[K, ...]`: what travels up) and metrics: per-client `[K]` loss
    and steps, `[K, num_blocks]` `keep` (the blocks each client ran: depth
    dropout), and the round's scalar `divergence` (`client_divergence`).

    Attributes:
      jitted: the jitted function (for `eval_shape` / compile-only use).
      sent: `(server) -> Sent`, the download of a round (for accounting).
      num_traces: how many times it was traced.
    """

    def __init__(self, fn: Callable, sent: Callable):
        self.num_traces = 0
        self.sent = sent

        def counted(*args):
            self.num_traces += 1   # Python side effect: runs at trace time only.
            return fn(*args)

        self.jitted = jax.jit(counted)

    def __call__(self, *args):
        return self.jitted(*args)


def _aggregate_kept(aggregator, global_params, uploaded, weights, keep, round_in_stage,
                    block_parts):
    """Part by part; block i's (part `block_parts[i]`) weights are zero for
    clients that dropped it (`keep` `[K, num_blocks]`)."""
    out = {}
    for part, stacked in uploaded.items():
        w = (weights * keep[:, block_parts.index(part)]
             if part in block_parts else weights)
        new = aggregator.aggregate({part: global_params[part]}, {part: stacked}, w,
                                   round_in_stage)[part]
        out[part] = jax.tree.map(lambda a, g: jnp.where(jnp.sum(w) > 0, a, g), new,
                                 global_params[part])
    return out


def _pad_clients(selected, reported, num_clients: int, padded: int):
    """`selected`, `reported` grown to `padded` entries: id `num_clients`
    (out of range) and not reported."""
    pad = padded - selected.shape[0]
    if not pad:
        return selected, reported
    return (jnp.concatenate([selected, jnp.full((pad,), num_clients, selected.dtype)]),
            jnp.concatenate([reported, jnp.zeros((pad,), bool)]))


def client_divergence(uploaded: dict, reported: jax.Array, key: jax.Array,
                      num_params: int) -> jax.Array:
    """Paper Fig. 6: a randomly chosen reporting client's mean distance to
    the other reporting clients.

    The distance between two clients is the L2 norm of the difference of
    their whole present models divided by sqrt(num_params): a per-parameter
    RMS, so models of different sizes compare. Only the uploaded (exchanged)
    parts can differ (the frozen prefix is the same for every client), so a
    layer-wise run's divergence shrinks as its frozen share grows, as the
    paper's Fig. 6 shows.

    Args:
      uploaded: exchanged parts after local training, leaves `[K, ...]`.
      reported: `[K]` bool.
      key: picks the client (uniformly among those that reported).
      num_params: parameters of the whole present model (frozen included).

    Returns:
      Scalar float32; 0 when fewer than two clients reported.
    """
    chosen = jax.random.categorical(key, jnp.where(reported, 0.0, -jnp.inf))
    # Leaf by leaf: no [K, D] copy of every upload.
    squared = sum(jnp.sum(jnp.square((x - x[chosen]).astype(jnp.float32)).reshape(
        x.shape[0], -1), axis=1) for x in jax.tree.leaves(uploaded))           # [K]
    dist = jnp.sqrt(squared / num_params)
    others = reported & (jnp.arange(reported.shape[0]) != chosen)
    count = jnp.sum(others)
    return jnp.where(count > 0, jnp.sum(jnp.where(others, dist, 0.0))
                     / jnp.maximum(count, 1), 0.0)


def make_round_fn(clients_update: Callable, algorithm: FederatedAlgorithm,
                  aggregator: Aggregator, server_update: ServerUpdate,
                  mesh=None, dropout_blocks: tuple[str, ...] = ()) -> RoundFunction:
    """Builds the round function of a stage (see `RoundFunction`).

    With depth dropout, `dropout_blocks` names the part of each present
    block (`StageSpec.block_parts`): each exchanged block is aggregated over
    the clients that kept it this round (the local training's `keep`
    metric); a block no reporting client kept stays as it was.

    With a `mesh` (see `sharding.py`), the participating clients are split
    over its devices (of every process, in a multi-process run): their
    data, local training and uploads are laid out along the mesh's client
    axis, and the aggregate is replicated (XLA emits the all-reduce). A K
    that the mesh size does not divide is padded with zero-weight clients
    (id N: out of range, so their state is never written back; they train
    on a clamped copy of client N-1's data and are sliced off the outputs).
    The metrics are replicated, so every process can read them.
    """
    def round_fn(frozen, state, images, sizes, selected, reported, round_index,
                 round_in_stage, key, public):
        sent = sent_of(algorithm, state.server)
        k = selected.shape[0]
        selected, reported = _pad_clients(selected, reported, sizes.shape[0],
                                          sharding.padded_count(k, mesh))
        keys = jax.vmap(lambda c: jax.random.fold_in(key, c))(selected)
        # 'clip': a padding id reads client N-1's rows (trained, then ignored).
        client_images, client_sizes, states = jax.tree.map(
            lambda x: jnp.take(x, selected, axis=0, mode='clip'),
            (images, sizes, state.clients))
        if mesh is not None:
            client_images, client_sizes = jax.lax.with_sharding_constraint(
                (client_images, client_sizes), sharding.client_sharded(mesh))
        uploads, new_states, metrics = clients_update(
            frozen, sent, states, client_images, client_sizes, keys, round_index,
            public)
        if mesh is not None:
            uploads = jax.lax.with_sharding_constraint(
                uploads, sharding.client_sharded(mesh))
        weights = client_sizes.astype(jnp.float32) * reported
        if dropout_blocks:
            aggregated = _aggregate_kept(aggregator, state.server.params, uploads.params,
                                         weights, metrics['keep'], round_in_stage,
                                         dropout_blocks)
        else:
            aggregated = aggregator.aggregate(state.server.params, uploads.params,
                                              weights, round_in_stage)
        params, opt_state = server_update.apply(state.server.params, aggregated,
                                                state.server.opt_state)
        if mesh is not None:
            params = jax.lax.with_sharding_constraint(params, sharding.replicated(mesh))
        extras = algorithm.server_update(state.server.extras, uploads.extras,
                                         selected, weights)
        anyone = jnp.any(reported)
        server = jax.tree.map(lambda new, old: jnp.where(anyone, new, old),
                              ServerState(params, opt_state, extras), state.server)
        clients = jax.tree.map(
            lambda all_, new, old: all_.at[selected].set(
                jnp.where(reported.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
                mode='drop'),   # padding ids (N) are out of range: dropped
            state.clients, new_states, states)
        # Its own key: client ids fold in [0, N), this constant lies beyond.
        present = sum(x.size for x in jax.tree.leaves((frozen, state.server.params)))
        metrics = {**metrics, 'divergence': client_divergence(
            uploads.params, reported, jax.random.fold_in(key, DIVERGENCE_KEY), present)}
        uploads, metrics = jax.tree.map(lambda x: x[:k] if x.ndim else x,
                                        (uploads, metrics))
        if mesh is not None:
            metrics = jax.lax.with_sharding_constraint(metrics, sharding.replicated(mesh))
        return RoundState(server, clients), uploads, metrics

    return RoundFunction(round_fn, lambda server: sent_of(algorithm, server))
