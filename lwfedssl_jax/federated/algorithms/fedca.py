"""FedCA (Zhang et al., arXiv 2010.08982, 2020): dictionary and alignment.

Federated contrastive averaging for SimCLR-style clients (spec
fedssl-baselines §7). Only the paper's abstract was available; this module
is a reconstruction, checked against the traffic the LW-FedSSL paper
charges FedCA (Table 2: 30.69 "GB" against FedSimCLR's 8.03; see
`experiments/table2/`), and every choice below is ours:

* **Dictionary module.** After local training, client k computes the
  projector outputs z = H(F(x)) of all its own (un-augmented) images and
  uploads them, `[N_max, F]` with a validity mask. The server keeps the
  latest representations of every client, `[N, N_max, F]`, and broadcasts
  the whole dictionary each round. In every local step the dictionary rows
  are extra negatives of the contrastive loss (NT-Xent with M more
  negatives per anchor: −log e^{s⁺/τ} / (Σ_{batch} e^{s/τ} + Σ_{m ∈ dict}
  e^{s_m/τ})). A client's own previous entries stay in the dictionary (the
  abstract does not say otherwise).
* **Alignment module.** The server trains a base model on a small public
  set (`data.public_size` images held out from the training split,
  `data.public_base_epochs` epochs, the run's SSL method; see
  `builders.public_reference`) and every client downloads the public set and
  the base model's representations of it once. Each local step adds
      β · mean_i ‖ẑ_local(x_i) − ẑ_base(x_i)‖²,   ẑ = z / ‖z‖,
  over `align_batch` public images drawn at random (β = `align_weight`).
* Aggregation of the model: FedAvg (example-weighted), as FedSimCLR.
* Paper-convention GFLOPs: two extra single-sample forward passes of the
  present encoder + projector per round (the dictionary pass and the
  alignment pass), which matches Table 2's +130 GFLOPs within 1%.
"""

import jax
import jax.numpy as jnp

from lwfedssl_jax.data.augment import to_float
from lwfedssl_jax.errors import ConfigError
from lwfedssl_jax.federated.algorithms.base import (
    ClientStart, FederatedAlgorithm, StepContext, local_only_parts)
from lwfedssl_jax.ssl.base import Negatives
from lwfedssl_jax.ssl.losses import l2_normalize
from lwfedssl_jax.utils.tree import select


def make(*, spec, method, num_clients, max_examples, rep_dim,
         dictionary: bool = True, align_weight: float = 1.0,
         align_batch: int = 32) -> FederatedAlgorithm:
    """Builds FedCA for one stage.

    Args:
      spec, method, num_clients, max_examples, rep_dim: set by the engine
        (see `algorithms/__init__.py`).
      dictionary: share the dictionary of client representations.
      align_weight: β of the alignment term (0 disables the alignment module
        and the public set).
      align_batch: public images per local step for the alignment term.
    """
    if dictionary and not method.supports_negatives:
        raise ConfigError('ssl.name', method.name, 'fl.algorithm=fedca shares a '
                          'dictionary of negatives and this method takes none.',
                          'use simclr or mocov3, or algorithms.fedca.dictionary=False.')
    if align_weight < 0:
        raise ConfigError('algorithms.fedca.align_weight', align_weight, 'must be >= 0.')
    if align_batch < 1:
        raise ConfigError('algorithms.fedca.align_batch', align_batch, 'must be >= 1.')
    local = local_only_parts(spec)

    def init_server(params):
        del params
        if not dictionary:
            return {}
        return {'features': jnp.zeros((num_clients, max_examples, rep_dim), jnp.float32),
                'valid': jnp.zeros((num_clients, max_examples), bool)}

    def client_context(sent, state, public):
        negatives = None
        if dictionary:
            features = sent.extras['features']
            negatives = Negatives(features.reshape(-1, features.shape[-1]),
                                  sent.extras['valid'].reshape(-1))
        return StepContext(negatives=negatives, public_images=public.images,
                           public_targets=public.targets)

    def client_final(result):
        state = {'local': select(result.online, local)}
        if not dictionary:
            return {}, state
        features, valid = result.represent()
        return {'features': features, 'valid': valid}, state

    def server_update(extras, uploaded, selected, weights):
        if not dictionary:
            return {}
        reported = uploaded['valid'] & (weights > 0)[:, None]
        # 'drop': a padding client (id N, `round.py`) writes nothing.
        return {'features': extras['features'].at[selected].set(uploaded['features'],
                                                                mode='drop'),
                'valid': extras['valid'].at[selected].set(reported, mode='drop')}

    def align(inputs):
        ctx = inputs.context
        idx = jax.random.randint(inputs.key, (align_batch,), 0,
                                 ctx.public_images.shape[0])
        z = inputs.project(to_float(ctx.public_images[idx]))
        diff = l2_normalize(z) - l2_normalize(ctx.public_targets[idx])
        loss = align_weight * jnp.mean(jnp.sum(diff * diff, axis=-1))
        return loss, {'align': loss}

    return FederatedAlgorithm(
        name='fedca', init_server=init_server, broadcast=lambda extras: extras,
        init_client=lambda params: {'local': select(params, local)},
        client_init=lambda sent, state, received: ClientStart(
            online={**received, **state['local']}, target=None),
        client_context=client_context, client_final=client_final,
        server_update=server_update,
        loss_terms=(align,) if align_weight > 0 else (),
        uses_public_data=align_weight > 0, paper_forwards_per_round=2)
