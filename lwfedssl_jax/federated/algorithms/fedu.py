"""FedU (Zhuang et al., ICCV 2021): divergence-aware predictor update.

Paper §3 (as implemented by the authors in EasyFL, `applications/fedssl`,
flags `--update_encoder online --update_predictor dapu`; spec
fedssl-baselines §1). Each client keeps its whole local model between
rounds: online encoder + projector θ_k, predictor φ_k, target ξ_k.

On receipt of the global (θ_g, φ_g):
    θ_k ← θ_g
    φ_k ← φ_g            if d_k < ε   (or on the client's first round)
    φ_k kept (local)     otherwise
    ξ_k kept (persistent target, never reset, never sent)
After local training the client uploads θ_k and φ_k (FedAvg on the server,
as FedBYOL) and measures its divergence over the round:
    d_k = (1/|C|) Σ_{l ∈ C} ‖W_l^start − W_l^end‖₂,
C = the ≥ 2-D weight tensors of the trained encoder parts (EasyFL: the
ResNet's conv weights; a ViT has none, spec pitfall 2). d_k of round r gates
the predictor of the client's next round.

Choices of ours (the LW-FedSSL paper gives no FedU hyperparameters):
* ε: EasyFL's absolute 0.4 is tuned for ResNet-18 + SGD; under ViT + AdamW
  divergences have another scale, so ε is relative by default: ε =
  `threshold` × the client's first-round divergence d_k^(1)
  (`relative=True`, threshold 1.0: keep the local predictor while the
  client drifts at least as much per round as it did at first). With
  `relative=False`, ε = threshold in absolute L2 units.
* In the client's first round the target starts as a copy of the online
  model (EasyFL aliases the two in that round; spec pitfall 4).
* The divergence is taken over the stage's trained encoder parts; in
  layer-wise mode each stage is an independent FL process (base.py).
"""

import jax
import jax.numpy as jnp

from lwfedssl_jax.errors import ConfigError
from lwfedssl_jax.federated.algorithms.base import (
    ClientStart, FederatedAlgorithm, StepContext, no_extras, round_drift,
    target_parts)
from lwfedssl_jax.utils.tree import select


def make(*, spec, method, num_clients, max_examples, rep_dim, threshold: float = 1.0,
         relative: bool = True) -> FederatedAlgorithm:
    """Builds FedU for one stage (needs a method with a target branch)."""
    del num_clients, max_examples, rep_dim
    if not method.has_target:
        raise ConfigError('ssl.name', method.name, 'fl.algorithm=fedu needs an SSL '
                          'method with a momentum target: byol or mocov3.')
    if threshold < 0:
        raise ConfigError('algorithms.fedu.threshold', threshold, 'must be >= 0.')
    copied = target_parts(spec, method)
    predictor = tuple(p for p in spec.trainable if p in method.head_names
                      and p not in method.target_head_names)

    def init_client(params):
        return {'online': select(params, spec.trainable),
                'target': select(params, copied),
                'divergence': jnp.zeros((), jnp.float32),
                'reference': jnp.zeros((), jnp.float32),
                'rounds': jnp.zeros((), jnp.int32)}

    def client_init(sent, state, received):
        seen = state['rounds'] > 0
        eps = threshold * state['reference'] if relative else threshold
        keep_local = seen & (state['divergence'] >= eps)
        online = {**state['online'], **received}   # local-only parts stay local
        for p in predictor:
            online[p] = jax.tree.map(lambda loc, glob: jnp.where(keep_local, loc, glob),
                                     state['online'][p], received[p])
        target = jax.tree.map(lambda t, o: jnp.where(seen, t, o), state['target'],
                              select(online, copied))
        return ClientStart(online=online, target=target)

    def client_final(result):
        d = round_drift(result, method)
        state = result.state
        return {}, {'online': result.online, 'target': result.target,
                    'divergence': d,
                    'reference': jnp.where(state['rounds'] > 0, state['reference'], d),
                    'rounds': state['rounds'] + 1}

    return FederatedAlgorithm(
        name='fedu', init_server=no_extras, broadcast=no_extras,
        init_client=init_client, client_init=client_init,
        client_context=lambda sent, state, public: StepContext(),
        client_final=client_final, server_update=no_extras)
