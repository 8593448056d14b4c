"""FedEMA (Zhuang et al., ICLR 2022): divergence-aware EMA of the local model.

Paper §4 (as implemented by the authors in EasyFL, `--update_encoder
dynamic_ema_online --update_predictor dynamic_dapu --auto_scaler y
--auto_scaler_target 0.7`, and by Plato's port; spec fedssl-baselines §2).
Each client keeps its local model between rounds: online θ_k (encoder +
projector), predictor φ_k, target ξ_k. On receipt of the global (θ_g, φ_g),
from the client's second participation on:
    λ_k = τ / d_k                      (set once, at the first such round)
    μ_k = min(1, λ_k d_k)              (= τ in that round)
    θ_k ← μ_k θ_k + (1 − μ_k) θ_g,    φ_k ← μ_k φ_k + (1 − μ_k) φ_g
    ξ_k kept (persistent target, never reset, never sent)
In its first participation a client takes the global model (μ = 0) and its
target starts as a copy of it. Uploads and server: as FedBYOL (FedAvg of
θ_k, φ_k). The divergence d_k has two forms (`divergence`):
* 'drift' (default; the authors' EasyFL code, `_calculate_divergence`): the
  client's change over its previous round, (1/|C|) Σ_l ‖W_l^start −
  W_l^end‖ over the encoder weight tensors (`base.round_drift`);
* 'distance' (the paper's text, Plato's port): ‖θ_k − θ_g‖₂ at receipt, one
  norm over every θ tensor (the stage's trained encoder parts + projector).
Why 'drift' is the default: with a constant learning rate (the LW-FedSSL
setting) 'distance' feeds back on itself: μ > 0 keeps clients apart, which
raises d_k and μ, and μ reached 1 for every client by round 5 of the
quickstart run, after which clients no longer take the global model and
their average is no encoder at all (linear probe 71.1 %, the random
encoder's level; 'drift': see experiments/table2/README.md). The original
FedEMA decays its learning rate every round, which damps that loop.

Choices of ours (LW-FedSSL gives no FedEMA hyperparameters):
* τ = 0.7 (EasyFL README and Plato; EasyFL's `main.py` defaults to 0.8).
* λ_k is calibrated at the client's first EMA round (EasyFL); Plato
  calibrates on the server during the first rounds.
"""

import jax
import jax.numpy as jnp

from lwfedssl_jax.errors import ConfigError, did_you_mean
from lwfedssl_jax.federated.algorithms.base import (
    ClientStart, FederatedAlgorithm, StepContext, no_extras, round_drift,
    target_parts)
from lwfedssl_jax.utils.tree import select


def l2_distance(a, b) -> jax.Array:
    """‖a − b‖₂ over all leaves of two pytrees of equal structure."""
    sq = jax.tree.leaves(jax.tree.map(lambda x, y: jnp.sum((x - y) ** 2), a, b))
    return jnp.sqrt(sum(sq)) if sq else jnp.zeros((), jnp.float32)


DIVERGENCES = ('drift', 'distance')


def make(*, spec, method, num_clients, max_examples, rep_dim, tau: float = 0.7,
         divergence: str = 'drift') -> FederatedAlgorithm:
    """Builds FedEMA for one stage (needs a method with a target branch)."""
    del num_clients, max_examples, rep_dim
    if not method.has_target:
        raise ConfigError('ssl.name', method.name, 'fl.algorithm=fedema needs an SSL '
                          'method with a momentum target: byol or mocov3.')
    if not 0 < tau <= 1:
        raise ConfigError('algorithms.fedema.tau', tau, 'must be in (0, 1].')
    if divergence not in DIVERGENCES:
        raise ConfigError('algorithms.fedema.divergence', divergence,
                          f'choices: {DIVERGENCES}.' + did_you_mean(divergence, DIVERGENCES))
    copied = target_parts(spec, method)
    theta = tuple(p for p in copied if p in spec.exchanged)

    def init_client(params):
        return {'online': select(params, spec.trainable),
                'target': select(params, copied),
                'scale': jnp.zeros((), jnp.float32),
                'mu': jnp.zeros((), jnp.float32),
                'drift': jnp.zeros((), jnp.float32),
                'rounds': jnp.zeros((), jnp.int32)}

    def client_init(sent, state, received):
        seen = state['rounds'] > 0
        d = (state['drift'] if divergence == 'drift' else
             l2_distance(select(state['online'], theta), select(received, theta)))
        calibrate = seen & (state['scale'] == 0) & (d > 0)
        scale = jnp.where(calibrate, tau / jnp.where(d > 0, d, 1.0), state['scale'])
        mu = jnp.where(seen, jnp.minimum(1.0, scale * d), 0.0)
        blended = jax.tree.map(lambda loc, glob: mu * loc + (1.0 - mu) * glob,
                               select(state['online'], tuple(received)), received)
        online = {**state['online'], **blended}   # local-only parts stay local
        target = jax.tree.map(lambda t, o: jnp.where(seen, t, o), state['target'],
                              select(online, copied))
        return ClientStart(online=online, target=target,
                           notes={'scale': scale, 'mu': mu})

    def client_final(result):
        return {}, {'online': result.online, 'target': result.target,
                    **result.start.notes, 'drift': round_drift(result, method),
                    'rounds': result.state['rounds'] + 1}

    return FederatedAlgorithm(
        name='fedema', init_server=no_extras, broadcast=no_extras,
        init_client=init_client, client_init=client_init,
        client_context=lambda sent, state, public: StepContext(),
        client_final=client_final, server_update=no_extras)
