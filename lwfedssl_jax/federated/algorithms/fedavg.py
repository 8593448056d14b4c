"""FedAvg-family algorithm (FedMoCoV3, FedBYOL, FedSimCLR; paper §1.5).

Clients keep nothing between rounds except the trainable parts that never
travel (a stage spec's trainable minus exchanged parts, `fl.local_parts`):
those are personal, carried in the client state and trained from where the
client left them. Everything else starts from what the server sent, and the
target branch is rebuilt from it every round (paper §1.7).
"""

from lwfedssl_jax.federated.algorithms.base import (
    ClientStart, FederatedAlgorithm, StepContext, local_only_parts, no_extras)
from lwfedssl_jax.utils.tree import select


def make(*, spec, method, num_clients, max_examples, rep_dim) -> FederatedAlgorithm:
    """Builds FedAvg for one stage (works with any SSL method)."""
    del method, num_clients, max_examples, rep_dim
    local = local_only_parts(spec)

    def init_client(params):
        return {'local': select(params, local)}

    def client_init(sent, state, received):
        return ClientStart(online={**received, **state['local']}, target=None)

    def client_final(result):
        return {}, {'local': select(result.online, local)}

    return FederatedAlgorithm(
        name='fedavg', init_server=no_extras, broadcast=no_extras,
        init_client=init_client, client_init=client_init,
        client_context=lambda sent, state, public: StepContext(),
        client_final=client_final, server_update=no_extras)
