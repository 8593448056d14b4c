"""Device mesh over the client axis (simulated clients spread over devices).

jax >= 0.10 makes `jax.make_mesh` axes `Explicit` by default, which breaks
ordinary array code (environment-notes §5); the client mesh uses `Auto` axes
so XLA's SPMD partitioner places each device's clients and inserts the
cross-device reduction of FedAvg itself.
"""

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from lwfedssl_jax.errors import ConfigError

CLIENTS = 'clients'


def mesh_size(num_devices: int) -> int:
    """Devices of the client mesh for `fl.mesh_devices` (1 = none, -1 = all).

    Asks the backend only for a mesh (starting it costs about a second).

    Raises:
      ConfigError: more devices than present, or a count below -1 / 0.
    """
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
