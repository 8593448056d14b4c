"""Multi-process runs on JAX's own distributed runtime (`jax.distributed`).

One process per host (a Cloud TPU VM of a pod slice), per GPU, or several
CPU processes on one machine (the tests). Every process runs the same
program on the same config: the server state is replicated, the round's
participating clients are split over every device of every process (the
client mesh, `sharding.py`), and XLA's collectives carry FedAvg's reduction
across processes. What is written to the run directory (metrics, events,
plots, summary) is written by process 0 alone; checkpoints are written by
orbax, collectively, once.

    python -m lwfedssl_jax.main ... --coordinator_address=host0:8476 \\
        --num_processes=2 --process_id=0       # and process_id=1 on the other
    python -m lwfedssl_jax.main ... --distributed   # TPU pod / SLURM: auto-detect
"""

import jax
import numpy as np
from jax.experimental import multihost_utils

from lwfedssl_jax.errors import ConfigError


def initialize(coordinator_address: str | None, num_processes: int | None,
               process_id: int | None, auto_detect: bool = False) -> bool:
    """Joins the distributed runtime; must run before anything touches a device.

    Args:
      coordinator_address: 'host:port' of process 0's coordinator, or None.
      num_processes, process_id: this job's size and this process's rank.
      auto_detect: let JAX read the cluster (Cloud TPU, SLURM, ...) itself.

    Returns:
      Whether the runtime was started (False: a single-process run).

    Raises:
      ConfigError: an incomplete or inconsistent set of flags.
    """
    explicit = (coordinator_address, num_processes, process_id)
    if auto_detect:
        if any(v is not None for v in explicit):
            raise ConfigError('--distributed', True, 'detects the cluster itself; give '
                              'either it or --coordinator_address/--num_processes/'
                              '--process_id, not both.')
        _cpu_collectives()
        jax.distributed.initialize()
        return True
    if all(v is None for v in explicit):
        return False
    if None in explicit:
        missing = [n for n, v in zip(('--coordinator_address', '--num_processes',
                                      '--process_id'), explicit) if v is None]
        raise ConfigError(missing[0], None, 'a multi-process run needs all three of '
                          '--coordinator_address, --num_processes and --process_id.')
    if num_processes < 1:
        raise ConfigError('--num_processes', num_processes, 'must be >= 1.')
    if not 0 <= process_id < num_processes:
        raise ConfigError('--process_id', process_id,
                          f'must be in [0, {num_processes}) (--num_processes).')
    if ':' not in coordinator_address:
        raise ConfigError('--coordinator_address', coordinator_address,
                          "must be 'host:port' (process 0's host).")
    _cpu_collectives()
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
    return True


def _cpu_collectives() -> None:
    # XLA:CPU has no cross-process collectives unless told which library to
    # use; the setting is ignored by GPU and TPU backends.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')


def is_primary() -> bool:
    """Whether this process writes the run's files (process 0)."""
    return jax.process_index() == 0


def to_host(tree):
    """Every leaf as a numpy array, readable by every process.

    A fully replicated array is read from this process's own copy; an
    array split over processes is gathered (collective: every process must
    call it at the same point).
    """
    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable \
                and not x.is_fully_replicated:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)
    return jax.tree.map(one, tree)
