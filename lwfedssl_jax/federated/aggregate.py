"""Server side of a round: aggregation rules and an optional server optimiser.

An `Aggregator` combines the clients' uploads into one model; a
`ServerUpdate` then applies an optax optimiser to the pseudo-gradient
`global - aggregate` (none = take the aggregate). Both are pure and jittable.

Weights are example counts; a weight of 0 marks a client that did not report
(padding or dropped) and never contributes. FedAvg renormalises over the
clients that took part (the paper is silent on partial participation; this is
the standard choice).
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lwfedssl_jax import sharding
from lwfedssl_jax.errors import ConfigError, did_you_mean

_HIGHEST = jax.lax.Precision.HIGHEST   # no TF32/bf16 passes in the reductions


def weighted_mean(stacked, weights: jax.Array):
    """Σ_c w_c x_c / Σ_c w_c over the leading client axis of every leaf.

    Args:
      stacked: pytree of `[K, ...]` arrays (one slice per client).
      weights: `[K]` non-negative weights (example counts); zero-weight rows
        (padding clients) do not contribute.

    Returns:
      Pytree of `[...]` arrays (NaN if every weight is 0).
    """
    w = weights.astype(jnp.float32)
    w = w / jnp.sum(w)
    return jax.tree.map(
        lambda x: jnp.tensordot(w, _reported_rows(x, w), axes=1,
                                precision=_HIGHEST).astype(x.dtype),
        stacked)


def _reported_rows(x, weights):
    """`x` `[K, ...]` in float32, rows with weight 0 zeroed (no 0 * NaN leaks)."""
    keep = (weights > 0).reshape((-1,) + (1,) * (x.ndim - 1))
    return jnp.where(keep, x.astype(jnp.float32), 0.0)


def make_sharded_weighted_mean(mesh: jax.sharding.Mesh):
    """`weighted_mean` jitted with the client axis sharded over the mesh.

    Inputs are split along the mesh's 'clients' axis (each device holds its
    clients' slices), the output is replicated; XLA inserts the cross-device
    reduction. K must be a multiple of the mesh size (pad with zero-weight
    clients otherwise).
    """
    clients = sharding.client_sharded(mesh)
    return jax.jit(weighted_mean, in_shardings=(clients, clients),
                   out_shardings=sharding.replicated(mesh))


class Aggregator(NamedTuple):
    """A server aggregation rule.

    Attributes:
      name: the registry key (`server.aggregator`).
      aggregate: `(global_params, stacked, weights, round_in_stage) -> params`;
        `global_params` the tree sent this round (leaves `[...]`), `stacked`
        the uploads (leaves `[K, ...]`), `weights` `[K]` example counts (0 =
        did not report), `round_in_stage` a traced int32 scalar (0-based).
        Every weight 0 returns `global_params` unchanged.
    """
    name: str
    aggregate: Callable


def _unless_nobody_reported(global_params, new, weights):
    reported = jnp.any(weights > 0)
    return jax.tree.map(lambda g, n: jnp.where(reported, n.astype(g.dtype), g),
                        global_params, new)


def make_fedavg() -> Aggregator:
    """FedAvg: Σ_k w_k x_k / Σ_k w_k (example-weighted, reporting clients)."""
    def aggregate(global_params, stacked, weights, round_in_stage):
        del round_in_stage
        return _unless_nobody_reported(global_params,
                                       weighted_mean(stacked, weights), weights)
    return Aggregator('fedavg', aggregate)


def _ldawa_leaf(g, x, coef):
    """δ-scaled unweighted mean of one tensor; `coef` `[K]` = reported / |S|."""
    xf = _reported_rows(x, coef)
    if g.ndim == 0:                      # 0-d: unscaled (authors' rule)
        delta = jnp.ones(x.shape[:1], jnp.float32)
    else:
        gf = g.astype(jnp.float32)
        axes = tuple(range(1, x.ndim))
        dot = jnp.sum(xf * gf[None], axis=axes)
        # sqrt(‖w_k‖² ‖w_g‖²): exactly ‖w_g‖² when w_k = w_g, so δ = 1 there.
        sq = jnp.sum(xf * xf, axis=axes) * jnp.sum(gf * gf)
        ok = sq > 0                      # ‖w_k‖ = 0 (authors') or ‖w_g‖ = 0 (ours)
        cos = dot / jnp.sqrt(jnp.where(ok, sq, 1.0))
        delta = jnp.where(ok, jnp.minimum(1.0, cos), 1.0)   # no lower clip
    c = (coef * delta).reshape((-1,) + (1,) * (x.ndim - 1))
    return jnp.sum(c * xf, axis=0).astype(x.dtype)


def make_ldawa(warmup_rounds: int = 1) -> Aggregator:
    """L-DAWA (Rehman et al., ICCV'23): layer-wise divergence-aware averaging.

    Per leaf tensor ℓ and reporting client k (weight > 0), with S the set of
    reporting clients and w_g the global tensor sent this round:
      δ_k = min(1, <w_k, w_g> / (‖w_k‖ ‖w_g‖))   (no lower clip: δ < 0 flips)
      new = (1/|S|) Σ_{k∈S} δ_k w_k              (unweighted, not / Σδ)
    as in `yasar-rehman/L-DAWA: L-DAWA-Agg.py` (`my_aggregate`, L15-42: 0-d
    skip L23, ‖w_k‖ > 0 check L24, cosine L25, clip L28-30, / total_clients
    L38-41) and the same function in `FL_Pretraining/main_CIFAR10_LDAWA.py`.
    The cosine is on the weights themselves, and the global model shrinks by
    the mean cosine. 0-d leaves and ‖w_k‖ = 0 keep δ = 1 (authors'); ‖w_g‖ = 0
    also gives δ = 1 (ours: the authors divide by zero, and freshly initialised
    zero/LayerNorm biases hit it).

    Warm-up: the authors' main script (`SaveModelStrategy.aggregate_fit`,
    `if int(GLB_RND) > 2`) runs sample-weighted FedAvg for rounds 1-3 and
    L-DAWA from round 4; `L-DAWA-Agg.py` has none. Ours: FedAvg while
    `round_in_stage < warmup_rounds`, restarting every stage since each stage
    starts from freshly initialised parts (config key
    `aggregators.ldawa.warmup_rounds`, default 1).

    Args:
      warmup_rounds: FedAvg rounds at the start of each stage (>= 0).
    """
    if warmup_rounds < 0:
        raise ConfigError('aggregators.ldawa.warmup_rounds', warmup_rounds, 'must be >= 0.')

    def aggregate(global_params, stacked, weights, round_in_stage):
        mask = (weights > 0).astype(jnp.float32)
        coef = mask / jnp.maximum(jnp.sum(mask), 1.0)
        dawa = jax.tree.map(lambda g, x: _ldawa_leaf(g, x, coef),
                            global_params, stacked)
        avg = weighted_mean(stacked, weights)
        warm = round_in_stage < warmup_rounds
        new = jax.tree.map(lambda a, d: jnp.where(warm, a, d), avg, dawa)
        return _unless_nobody_reported(global_params, new, weights)
    return Aggregator('ldawa', aggregate)


AGGREGATORS = {'fedavg': make_fedavg, 'ldawa': make_ldawa}


def make_aggregator(name: str, **kwargs) -> Aggregator:
    """The registered aggregator `name` built with its keyword arguments."""
    if name not in AGGREGATORS:
        raise ConfigError('server.aggregator', name, f'unknown; choose one of '
                          f'{sorted(AGGREGATORS)}.' + did_you_mean(name, AGGREGATORS))
    return AGGREGATORS[name](**kwargs)


class ServerUpdate(NamedTuple):
    """The server optimiser applied after aggregation.

    Attributes:
      init: `params -> state`.
      apply: `(global_params, aggregated, state) -> (new_params, state)`.
    """
    init: Callable[[Any], Any]
    apply: Callable


SERVER_OPTIMIZERS = ('none', 'sgd', 'adam')


def make_server_update(optimizer: str, *, learning_rate: float = 1.0,
                       momentum: float = 0.0, b1: float = 0.9, b2: float = 0.99,
                       eps: float = 1e-3) -> ServerUpdate:
    """A server optimiser on the pseudo-gradient g = global - aggregated.

    'none': new = aggregated, state `()`. 'sgd': `optax.sgd(learning_rate,
    momentum)`; lr 1 without momentum reproduces the aggregate, momentum > 0
    is FedAvgM (Hsu et al. 2019). 'adam': `optax.adam(learning_rate, b1, b2,
    eps)` is FedAdam (Reddi et al., ICLR'21); `eps` defaults to their τ = 1e-3
    (and b2 to their 0.99); unlike their Algorithm 2, optax bias-corrects the
    moments. Either way `updates = tx.update(g, state, global)` and
    new = global + updates.

    Args:
      optimizer: one of `SERVER_OPTIMIZERS` (`server.optimizer`).
      learning_rate: server learning rate (> 0).
      momentum: heavy-ball momentum for 'sgd', in [0, 1).
      b1, b2, eps: Adam's moment decays and denominator constant.
    """
    if optimizer not in SERVER_OPTIMIZERS:
        raise ConfigError('server.optimizer', optimizer, f'unknown; choose one of '
                          f'{list(SERVER_OPTIMIZERS)}.'
                          + did_you_mean(optimizer, SERVER_OPTIMIZERS))
    if not learning_rate > 0:
        raise ConfigError('server.learning_rate', learning_rate, 'must be > 0.')
    if not 0 <= momentum < 1:
        raise ConfigError('server.momentum', momentum, 'must be in [0, 1).')
    if optimizer == 'none':
        return ServerUpdate(lambda params: (),
                            lambda global_params, aggregated, state: (aggregated, state))
    if optimizer == 'sgd':
        tx = optax.sgd(learning_rate, momentum=momentum or None)
    else:
        tx = optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)

    def apply(global_params, aggregated, state):
        grad = jax.tree.map(jnp.subtract, global_params, aggregated)
        updates, state = tx.update(grad, state, global_params)
        return optax.apply_updates(global_params, updates), state
    return ServerUpdate(tx.init, apply)
