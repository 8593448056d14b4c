"""Compiled-executable probes: XLA's own FLOP count of a jitted function.

`cost_analysis()` is best effort: depending on the JAX version and backend it
returns a dict, a list with one dict per computation, or None. This module
hides that; callers get a float or a clear error.
"""

import jax


def compiled_flops(fn, *abstract_args) -> float:
    """FLOPs XLA counts for one call of `jax.jit(fn)(*abstract_args)`.

    Args:
      fn: a pure function.
      abstract_args: pytrees of `jax.ShapeDtypeStruct` (or arrays); nothing
        is executed, only lowered and compiled.

    Raises:
      RuntimeError: the backend reports no cost analysis.
    """
    compiled = jax.jit(fn).lower(*abstract_args).compile()
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or 'flops' not in cost:
        raise RuntimeError('This JAX backend returned no cost_analysis() FLOPs; '
                           'use the analytic FLOP count instead.')
    return float(cost['flops'])


def abstract(tree):
    """ShapeDtypeStruct mirror of a pytree of arrays."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
