"""One federated round as a single jitted function (built once per stage)."""

from typing import Callable

import jax
import jax.numpy as jnp

from lwfedssl_jax import sharding
from lwfedssl_jax.federated.aggregate import weighted_mean


def make_round_fn(clients_update: Callable, mesh=None) -> Callable:
    """Builds `round_fn(frozen, exchanged, images, sizes, selected, key)`.

    With a `mesh` (see `sharding.py`), the participating clients are split
    over its devices: their data, local training and uploads are laid out
    along the mesh's client axis, and the FedAvg result is replicated (XLA
    emits the all-reduce). K must then be a multiple of the mesh size.

    Args to the returned function:
      frozen: present parts that stay on the clients (never sent).
      exchanged: the server's exchanged subtree: what is sent down.
      images: `[N, N_max, H, W, 3]` uint8, every client's padded data.
      sizes: `[N]` int32 example counts.
      selected: `[K]` int32 ids of this round's participating clients.
      key: the round key; client c trains with `fold_in(key, c)`.

    Returns:
      `(new_exchanged, uploads, metrics)`: the FedAvg of the uploads, the
      stacked uploads `[K, ...]` (what travels up), and per-client metrics
      `[K]`.

    The returned function is `jax.jit`-ed; it traces once per stage because
    every shape it sees is fixed within a stage. `round_fn.num_traces` says
    how many times it was traced (tests assert 1 per stage).
    """
    counter = _TraceCounter()

    def round_fn(frozen, exchanged, images, sizes, selected, key):
        counter.num_traces += 1  # Python side effect: runs at trace time only.
        keys = jax.vmap(lambda c: jax.random.fold_in(key, c))(selected)
        client_images, client_sizes = images[selected], sizes[selected]
        if mesh is not None:
            client_images, client_sizes = jax.lax.with_sharding_constraint(
                (client_images, client_sizes), sharding.client_sharded(mesh))
        uploads, metrics = clients_update(frozen, exchanged, client_images,
                                          client_sizes, keys)
        if mesh is not None:
            uploads = jax.lax.with_sharding_constraint(
                uploads, sharding.client_sharded(mesh))
        new = weighted_mean(uploads, client_sizes.astype(jnp.float32))
        if mesh is not None:
            new = jax.lax.with_sharding_constraint(new, sharding.replicated(mesh))
        return new, uploads, metrics

    counter.fn = jax.jit(round_fn)
    return counter


class _TraceCounter:
    """A jitted function that counts its traces."""

    def __init__(self):
        self.num_traces = 0
        self.fn = None

    def __call__(self, *args):
        return self.fn(*args)
