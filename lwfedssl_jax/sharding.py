"""Device mesh over the client axis (simulated clients spread over devices).

jax >= 0.10 makes `jax.make_mesh` axes `Explicit` by default, which breaks
ordinary array code (environment-notes §5); the client mesh uses `Auto` axes
so XLA's SPMD partitioner places each device's clients and inserts the
cross-device reduction of FedAvg itself.
"""

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from lwfedssl_jax.errors import ConfigError

CLIENTS = 'clients'


def mesh_size(num_devices: int) -> int:
    """Devices of the client mesh for `fl.mesh_devices` (1 = none, -1 = all).

    Asks the backend only for a mesh (starting it costs about a second).

    In a multi-process run (`distributed.py`) the mesh must hold every
    device of every process: each process trains its share of the clients.

    Raises:
      ConfigError: more devices than present, a count below -1 / 0, or a
        multi-process run whose mesh leaves devices out.
    """
    if jax.distributed.is_initialized() and jax.process_count() > 1:
        available = jax.device_count()
        if num_devices not in (-1, available):
            raise ConfigError('fl.mesh_devices', num_devices, f'a run of '
                              f'{jax.process_count()} processes splits its clients '
                              f'over all {available} devices: use -1.')
    if num_devices == 1:
        return 1
    available = jax.device_count()
    n = available if num_devices == -1 else num_devices
    if not 1 <= n <= available:
        raise ConfigError('fl.mesh_devices', num_devices, f'only {available} device(s) '
                          'present: use -1 for all, 1 for none, or a count up to that.')
    return n


def make_client_mesh(num_devices: int) -> jax.sharding.Mesh | None:
    """A 1-D mesh named 'clients' over the first `num_devices` devices.

    Args:
      num_devices: 1 = no mesh (single device), -1 = every device.

    Returns:
      The mesh, or None for a single device.
    """
    n = mesh_size(num_devices)
    if n == 1:
        return None
    return jax.make_mesh((n,), (CLIENTS,), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=jax.devices()[:n])


def client_sharded(mesh) -> NamedSharding:
    """Leading (client) axis split over the mesh."""
    return NamedSharding(mesh, P(CLIENTS))


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def padded_count(k: int, mesh) -> int:
    """K rounded up to a multiple of the mesh size (K itself without a mesh)."""
    return k if mesh is None else -(-k // mesh.size) * mesh.size


def put_replicated(tree, mesh):
    """Every leaf as one array replicated on every device of the mesh (of
    every process: each places its own copies; all must pass equal values);
    `tree` unchanged without a mesh (None)."""
    if mesh is None:
        return tree
    rep = replicated(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_callback(
        np.shape(x), rep, lambda index, x=np.asarray(x): x[index]), tree)


def abstract_replicated(tree, mesh):
    """`ShapeDtypeStruct`s of `tree` carrying the mesh's replicated sharding
    (restore targets that every process can hold); `tree` unchanged without
    a mesh (None)."""
    if mesh is None:
        return tree
    rep = replicated(mesh)
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep),
                        tree)
