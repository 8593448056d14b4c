"""Client datasets on device, padded to one shape (`[N, N_max, H, W, 3]`)."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lwfedssl_jax.data.partition import partition_indices


class FederatedData(NamedTuple):
    """All clients' unlabeled training images.

    Attributes:
      images: `[N, N_max, H, W, 3]` uint8; rows past a client's size are zero.
      sizes: `[N]` int32 example counts n_c.
      indices: per-client indices into the source training set (host).
      labels: per-client `[n_c]` int labels (host), `labels[c][i]` being the
        label of `indices[c][i]`. Training never reads them (SSL is
        unlabelled); they feed the partition report (`partition_report.py`).
    """
    images: jax.Array
    sizes: jax.Array
    indices: tuple
    labels: tuple

    @property
    def num_clients(self) -> int:
        return int(self.sizes.shape[0])

    @property
    def max_examples(self) -> int:
        return int(self.images.shape[1])


def make_federated_data(images: np.ndarray, labels: np.ndarray, *,
                        num_clients: int, kind: str, alpha: float,
                        seed: int) -> FederatedData:
    """Partitions `images` over clients and uploads them.

    Args:
      images: `[M, H, W, 3]` uint8.
      labels: `[M]` int class labels (read by `dirichlet`, kept per client).
      num_clients, kind, alpha, seed: as `partition.partition_indices`.

    Returns:
      A `FederatedData` whose `labels[c]` equals `labels[indices[c]]`.
    """
    parts = partition_indices(labels, num_clients, kind=kind, alpha=alpha,
                              seed=seed)
    n_max = max(len(p) for p in parts)
    padded = np.zeros((num_clients, n_max) + images.shape[1:], np.uint8)
    for c, idx in enumerate(parts):
        padded[c, :len(idx)] = images[idx]
    return FederatedData(images=jnp.asarray(padded),
                         sizes=jnp.asarray([len(p) for p in parts], jnp.int32),
                         indices=tuple(parts),
                         labels=tuple(np.asarray(labels)[p] for p in parts))
