"""FedAvg: example-count-weighted mean over the client axis (paper §1.5).

Weights are renormalised over the clients that took part in the round (the
paper is silent on partial participation; this is the standard choice).
"""

import jax
import jax.numpy as jnp

from lwfedssl_jax import sharding


def weighted_mean(stacked, weights: jax.Array):
    """Σ_c w_c x_c / Σ_c w_c over the leading client axis of every leaf.

    Args:
      stacked: pytree of `[K, ...]` arrays (one slice per client).
      weights: `[K]` non-negative weights (example counts); zero-weight rows
        (padding clients) do not contribute.

    Returns:
      Pytree of `[...]` arrays.
    """
    w = weights.astype(jnp.float32)
    w = w / jnp.sum(w)
    return jax.tree.map(
        lambda x: jnp.tensordot(w, x.astype(jnp.float32), axes=1).astype(x.dtype),
        stacked)


def make_sharded_weighted_mean(mesh: jax.sharding.Mesh):
    """`weighted_mean` jitted with the client axis sharded over the mesh.

    Inputs are split along the mesh's 'clients' axis (each device holds its
    clients' slices), the
    output is replicated; XLA inserts the cross-device reduction. K must be a
    multiple of the mesh size (pad with zero-weight clients otherwise).
    """
    clients = sharding.client_sharded(mesh)
    return jax.jit(weighted_mean, in_shardings=(clients, clients),
                   out_shardings=sharding.replicated(mesh))
