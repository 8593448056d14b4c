"""How a round runs its participating clients: `vmap`, `lax.map`, chunks, or
a chunk chosen from a memory budget ('auto').

`make_clients_update` turns one client's `local_train` (`client.py`) into
the update of all K participants, with per-client inputs and outputs
stacked along a leading `[K]` axis.

'auto' (`choose_chunk`): the largest number of clients vmapped together
whose compiled round fits the device memory budget (`fl.memory_budget_gib`),
so that e.g. 100 clients per round fit on one accelerator without tuning
`fl.client_chunk`. The compiled round's memory is close to affine in the
chunk c (the per-client activations of one chunk grow with c, the rest is
fixed): m(c) ~ a + b c. The chunk is chosen by compiling c = 1 and 2,
extrapolating, compiling the candidate to verify it and stepping down along
the measured line while it does not fit (usually 3 compiles per stage;
`builders.resolve_client_chunk` reuses the verified compile for the run).
On CPU, 'auto' runs the clients one after another (chunk 1) once one
client fits: the fastest there (see `builders.resolve_client_chunk`).
"""

import math
import os
from typing import Callable, NamedTuple

import jax

from lwfedssl_jax.errors import ConfigError

EXECUTIONS = ('vmap', 'map', 'chunked', 'auto')

# Share of the device's memory that 'auto' plans for. XLA's
# `memory_analysis()` counts the round's own buffers only: not allocator
# fragmentation, the program code, nor what else is live (the evaluation's
# features, host-side copies, on CPU other processes); 20% is left for them.
SAFETY_FRACTION = 0.8

GIB = 2**30

# 'auto' extrapolates the per-client memory from chunks 1 and 2 and plans with
# this share of that slope: the increments differ by up to ~30% from chunk to
# chunk (quickstart smoke layer-wise round: 1.31, 0.95, 1.13 MB per added
# client since the client step differentiates one view at a time; 1.93,
# 1.59, 1.78 MB before), and a candidate that does not fit costs one more
# compile, not a wrong choice.
SLOPE_SLACK = 0.8


class ChunkChoice(NamedTuple):
    """What 'auto' chose for one stage.

    Attributes:
      chunk: clients vmapped together (1 = sequential `lax.map`, K = `vmap`).
      estimated_bytes: the compiled round's memory at `chunk` (measured).
      budget_bytes: the budget it had to fit.
      budget_source: where the budget came from (the key or the device).
      measured: `{chunk: bytes}` of every compiled candidate.
    """
    chunk: int
    estimated_bytes: int
    budget_bytes: int
    budget_source: str
    measured: dict


def for_chunk(chunk: int, num_clients: int) -> tuple[str, int]:
    """`(execution, chunk)` for `make_clients_update` that vmap `chunk` of
    `num_clients` clients at a time: 1 is `lax.map`, >= K is `vmap`."""
    if chunk == 1:
        return 'map', 0
    if chunk >= num_clients:
        return 'vmap', 0
    return 'chunked', chunk


def check_execution(execution: str, chunk: int, memory_budget_gib: float = 0.0) -> None:
    """Raises `ConfigError` unless `fl.client_execution`, `fl.client_chunk`
    and `fl.memory_budget_gib` can run (see `make_clients_update`)."""
    if execution not in EXECUTIONS:
        raise ConfigError('fl.client_execution', execution, f'unknown; choices: '
                          f'{EXECUTIONS}.')
    if execution == 'chunked' and chunk < 1:
        raise ConfigError('fl.client_chunk', chunk, 'fl.client_execution=chunked '
                          'needs fl.client_chunk >= 1.')
    if execution == 'auto' and chunk != 0:
        raise ConfigError('fl.client_chunk', chunk, "fl.client_execution='auto' "
                          'chooses the chunk itself; leave fl.client_chunk=0.',
                          "or use fl.client_execution='chunked' to fix the chunk.")
    if execution != 'auto' and memory_budget_gib != 0:
        raise ConfigError('fl.memory_budget_gib', memory_budget_gib,
                          f"is used only by fl.client_execution='auto' (it is "
                          f'{execution!r}); leave it 0.')


def memory_budget(memory_budget_gib: float, device=None) -> tuple[int, str]:
    """Bytes the compiled round may use, and where that figure came from.

    Args:
      memory_budget_gib: `fl.memory_budget_gib`; > 0: that many GiB (2^30
        bytes) as given; 0: `SAFETY_FRACTION` of what the device reports
        (accelerators: the allocator's `bytes_limit`; CPU: the host's
        available memory, `MemAvailable` of /proc/meminfo or else the free
        physical pages).
      device: default the first local device.
    """
    if memory_budget_gib > 0:
        return int(memory_budget_gib * GIB), f'fl.memory_budget_gib={memory_budget_gib:g}'
    device = device or jax.local_devices()[0]
    stats = device.memory_stats() or {}
    if 'bytes_limit' in stats:
        total, what = int(stats['bytes_limit']), f'{device.platform} bytes_limit'
    else:
        total, what = host_available_bytes(), 'host MemAvailable'
    return (int(SAFETY_FRACTION * total),
            f'{SAFETY_FRACTION:g} x {what} {total / GIB:.2f} GiB (fl.memory_budget_gib=0)')


def host_available_bytes() -> int:
    """The host's available memory (Linux `MemAvailable`, else free pages)."""
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')


def balanced(chunk: int, num_clients: int) -> int:
    """The smallest chunk that needs as few sequential passes as `chunk`
    (e.g. 100 clients: 37 -> 34, three passes either way, less memory)."""
    passes = math.ceil(num_clients / chunk)
    return math.ceil(num_clients / passes)


def choose_chunk(memory_of: Callable[[int], int], num_clients: int, budget_bytes: int,
                 budget_source: str = '', memory_budget_gib: float = 0.0,
                 sequential: bool = False) -> ChunkChoice:
    """The largest chunk whose compiled round fits `budget_bytes` (balanced).

    Compiles c = 1 and 2 (`memory_of`) and takes the per-client slope
    b = m(2) - m(1). The first candidate is the largest c with
    m(1) + (c - 1) b `SLOPE_SLACK` <= budget (optimistic: the slope between
    two small chunks varies by up to ~30% from chunk to chunk), balanced (same
    number of passes, smallest chunk) and compiled; while a candidate does
    not fit, the next one comes from the line through the largest fitting
    chunk measured and the failed one. Each candidate is compiled once and
    the loop ends (chunk 1 fits), usually after 3 compiles.

    Args:
      memory_of: `c -> bytes` of the compiled round with c clients per chunk.
      num_clients: K, clients per round.
      budget_bytes: what the round may use (`memory_budget`).
      budget_source: for the record and messages.
      memory_budget_gib: the config value (for the error message).
      sequential: return chunk 1 (after checking it fits) without searching;
        what 'auto' does on CPU (see `builders.resolve_client_chunk`).

    Raises:
      ConfigError: on `fl.memory_budget_gib`, when even one client's round
        does not fit; it names the bytes needed.
    """
    measured = {}

    def m(c):
        if c not in measured:
            measured[c] = int(memory_of(c))
        return measured[c]

    if m(1) > budget_bytes:
        raise ConfigError(
            'fl.memory_budget_gib', memory_budget_gib,
            f"one client's compiled round needs {m(1):,} bytes ({m(1) / GIB:.3f} GiB), "
            f'more than the budget of {budget_bytes:,} bytes ({budget_source}).',
            f'a budget of at least {math.ceil(m(1) / GIB * 1000) / 1000:.3f} GiB (on a '
            'device that has it), or a smaller fl.batch_size or model.')
    c = 1
    if not sequential and num_clients > 1:
        slope = (m(2) - m(1)) * SLOPE_SLACK
        c = num_clients if slope <= 0 else min(
            num_clients, int((budget_bytes - m(1)) // slope) + 1)
        c = balanced(max(c, 1), num_clients)
        while m(c) > budget_bytes:    # step down between the fitting and failed chunks
            fit = max(x for x, v in measured.items() if v <= budget_bytes and x < c)
            slope = (m(c) - m(fit)) / (c - fit)
            c = balanced(max(fit, min(c - 1, fit + int((budget_bytes - m(fit)) // slope))),
                         num_clients)
    return ChunkChoice(c, m(c), int(budget_bytes), budget_source, dict(measured))


def make_clients_update(local_train: Callable, execution: str = 'vmap',
                        chunk: int = 0) -> Callable:
    """All participating clients of a round.

    Returns `clients_update(frozen, sent, states, images, sizes, keys,
    round_index, public)` where states (leaves `[K, ...]`), images
    `[K, N_max, H, W, 3]`, sizes `[K]`, keys `[K]` are per client and frozen,
    sent, round_index, public are broadcast; outputs (uploads, new states,
    metrics) are stacked `[K, ...]`.

    Args:
      execution: 'vmap' (parallel; the accelerator default), 'map'
        (`lax.map`, sequential inside jit: less memory, faster on CPU),
        'chunked' (`lax.map` over chunks of `chunk` clients, vmapped within)
        or 'auto' before it is resolved (`builders.resolve_client_chunk`
        rebuilds the round with the chosen chunk): runs as 'map', the
        execution with the least memory, so that compile-only uses
        (`resources.py`'s shapes) work unresolved.
      chunk: clients per vmapped chunk for 'chunked' (>= 1).
    """
    check_execution(execution, chunk)

    def clients_update(frozen, sent, states, images, sizes, keys, round_index,
                       public):
        if execution == 'vmap':
            return jax.vmap(local_train, in_axes=(None, None, 0, 0, 0, 0, None, None))(
                frozen, sent, states, images, sizes, keys, round_index, public)
        per_client = lambda xs: local_train(frozen, sent, *xs, round_index, public)
        return jax.lax.map(per_client, (states, images, sizes, keys),
                           batch_size=chunk if execution == 'chunked' else None)

    return clients_update
