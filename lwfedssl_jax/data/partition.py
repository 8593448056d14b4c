"""Split a labelled training set over simulated federated clients.

Two schemes are provided (paper notes §4.2): ``uniform`` is the random equal
(IID-like) split used for the COCO pretraining runs, and ``dirichlet`` is the
per-class Dirichlet label skew of Hsu et al. (2019), used with beta = 5 for
the CIFAR and MedMNIST heterogeneity experiments.

Example:
    >>> parts = partition_indices(labels, 10, kind='dirichlet', alpha=5.0)
    >>> client_0_images = train_images[parts[0]]
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from lwfedssl_jax.errors import ConfigError


# Dirichlet draws that leave a client below `min_size` are redrawn; this bounds
# the loop so an impossible request (tiny alpha, many clients) fails clearly.
MAX_DIRICHLET_TRIES = 1000


def _uniform(labels: np.ndarray, num_clients: int, rng: np.random.Generator,
             alpha: float, min_size: int) -> list[np.ndarray]:
    del alpha, min_size  # Equal sizes already satisfy any feasible min_size.
    perm = rng.permutation(len(labels))
    # array_split makes the first len % C parts one element longer.
    return list(np.array_split(perm, num_clients))


def _dirichlet(labels: np.ndarray, num_clients: int, rng: np.random.Generator,
               alpha: float, min_size: int) -> list[np.ndarray]:
    classes = np.unique(labels)
    for _ in range(MAX_DIRICHLET_TRIES):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            props = rng.dirichlet(np.full(num_clients, alpha))
            # Cut points in the shuffled class list; rounding the cumulative
            # sum (not each share) keeps the pieces complete and disjoint.
            cuts = np.round(np.cumsum(props)[:-1] * len(idx)).astype(np.int64)
            for client, piece in enumerate(np.split(idx, cuts)):
                parts[client].append(piece)
        merged = [np.concatenate(p) for p in parts]
        if min(len(p) for p in merged) >= min_size:
            return merged
    raise ConfigError(
        'data.dirichlet_alpha', alpha, f'no draw in {MAX_DIRICHLET_TRIES} tries gave '
        f'every one of {num_clients} clients at least min_size={min_size} '
        f'examples (alpha={alpha}, {len(labels)} examples). Increase alpha, '
        'or lower num_clients or min_size.')


PARTITIONERS: dict[str, Callable[..., list[np.ndarray]]] = {
    'uniform': _uniform,
    'dirichlet': _dirichlet,
}


def partition_indices(labels: np.ndarray, num_clients: int, *,
                      kind: str = 'uniform', alpha: float = 0.5, seed: int = 0,
                      min_size: int = 1) -> list[np.ndarray]:
    """Partitions example indices over clients.

    Args:
        labels: [N] integer class labels (only read by ``dirichlet``; for
            ``uniform`` only the length matters).
        num_clients: number of clients C, 1 <= C <= N.
        kind: ``'uniform'`` (random split into near-equal parts whose sizes
            differ by at most one) or ``'dirichlet'`` (for every class, client
            shares drawn from Dirichlet(alpha * 1_C); small alpha gives strong
            label skew, large alpha approaches a stratified split).
        alpha: Dirichlet concentration, > 0. Ignored by ``uniform``.
        seed: seed of ``np.random.default_rng``; the result is a pure function
            of ``(labels, num_clients, kind, alpha, seed, min_size)``.
        min_size: ``dirichlet`` redraws (at most ``MAX_DIRICHLET_TRIES`` times)
            until every client holds at least this many examples.

    Returns:
        C arrays of sorted int64 indices into ``labels``; together they are a
        partition of ``range(N)`` (disjoint and complete).

    Raises:
        ValueError: for a non-1-D ``labels``, ``num_clients`` outside
            ``[1, N]``, ``alpha <= 0``, ``min_size * num_clients > N``, an
            unknown ``kind``, or a Dirichlet request that cannot reach
            ``min_size``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f'labels must be 1-D [N], got shape {labels.shape}.')
    n = len(labels)
    if kind not in PARTITIONERS:
        raise ConfigError('data.partition', kind, f'unknown; choose one of '
                          f'{sorted(PARTITIONERS)}.')
    if num_clients < 1:
        raise ConfigError('fl.num_clients', num_clients, 'must be >= 1.')
    if num_clients > n:
        raise ConfigError('fl.num_clients', num_clients, f'exceeds the number of '
                          f'examples ({n}); every client needs data.',
                          'use fewer clients or more data.')
    if not alpha > 0:
        raise ConfigError('data.dirichlet_alpha', alpha, 'must be > 0 (Dirichlet '
                          'concentration).')
    if min_size < 0 or min_size * num_clients > n:
        raise ValueError(f'min_size={min_size} is impossible for '
                         f'{num_clients} clients and {n} examples; need '
                         f'0 <= min_size <= {n // num_clients}.')
    if kind == 'dirichlet' and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f'dirichlet partition needs integer labels, got '
                         f'dtype {labels.dtype}.')
    rng = np.random.default_rng(seed)
    parts = PARTITIONERS[kind](labels, num_clients, rng, alpha, min_size)
    return [np.sort(p).astype(np.int64) for p in parts]
