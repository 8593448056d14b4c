"""Compiled-executable probes: XLA's own FLOP count and memory of a jitted fn.

`cost_analysis()` and `memory_analysis()` are best effort: depending on the
JAX version and backend the former returns a dict, a list with one dict per
computation, or None, and the latter may be None. This module hides that;
callers get numbers or a clear error.
"""

from typing import NamedTuple

import jax


class CompiledCost(NamedTuple):
    """What XLA reports for one call of a compiled function.

    Attributes:
      flops: floating-point operations XLA counts (multiply-add = 2).
      memory_bytes: argument + output + temporary buffers, minus buffers
        aliased between arguments and outputs: the peak footprint of the
        executable (program code excluded).
    """
    flops: float
    memory_bytes: int


def compiled_cost(fn, *abstract_args) -> CompiledCost:
    """Lowers and compiles `jax.jit(fn)(*abstract_args)`; executes nothing.

    Args:
      fn: a pure function.
      abstract_args: pytrees of `jax.ShapeDtypeStruct` (or arrays).

    Raises:
      RuntimeError: the backend reports no cost or memory analysis.
    """
    compiled = jax.jit(fn).lower(*abstract_args).compile()
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or 'flops' not in cost:
        raise RuntimeError('This JAX backend returned no cost_analysis() FLOPs; '
                           'use the paper-convention FLOP count instead.')
    return CompiledCost(float(cost['flops']), memory_bytes(compiled))


def memory_bytes(compiled) -> int:
    """Peak bytes of a compiled executable by XLA's `memory_analysis()`:
    arguments + outputs + temporaries - buffers aliased (donated).

    Raises:
      RuntimeError: the backend reports no memory analysis.
    """
    mem = compiled.memory_analysis()
    if mem is None:
        raise RuntimeError('This JAX backend returned no memory_analysis().')
    return int(mem.argument_size_in_bytes + mem.output_size_in_bytes
               + mem.temp_size_in_bytes - mem.alias_size_in_bytes)


def compiled_flops(fn, *abstract_args) -> float:
    """FLOPs XLA counts for one call of `jax.jit(fn)(*abstract_args)`."""
    return compiled_cost(fn, *abstract_args).flops


def abstract(tree):
    """ShapeDtypeStruct mirror of a pytree of arrays."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
