"""Helpers over parameter dicts keyed by top-level part name."""

import jax
import numpy as np


def select(params: dict, parts) -> dict:
    """The sub-dict of `params` holding exactly `parts` (all must exist)."""
    missing = [p for p in parts if p not in params]
    if missing:
        raise KeyError(f'Parameter parts {missing} are missing; present: '
                       f'{sorted(params)}.')
    return {p: params[p] for p in parts}


def num_params(tree) -> int:
    """Total number of scalars in a pytree (works on ShapeDtypeStructs)."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def num_bytes(tree) -> int:
    """Total bytes of a pytree's leaves (works on ShapeDtypeStructs)."""
    return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize
                   for x in jax.tree.leaves(tree)))


def flatten_dict(tree: dict, sep: str = '/', prefix: str = '') -> dict:
    """Nested dict -> flat dict keyed by `sep`-joined paths ('a/b/kernel')."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten_dict(v, sep, f'{prefix}{k}{sep}'))
        else:
            out[f'{prefix}{k}'] = v
    return out


def unflatten_dict(flat: dict, sep: str = '/') -> dict:
    """Inverse of `flatten_dict`."""
    tree = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split(sep)
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree
