"""Process-level JAX set-up shared by the entry points."""

import os

import jax
from absl import logging


def setup(cache_dir: str | None = None) -> None:
    """Enables the persistent compilation cache (compiles dominate short runs)
    and keeps library INFO logs (orbax logs every save) off the console.

    The cache lives in `$LWFEDSSL_JAX_CACHE` or `~/.cache/lwfedssl_jax/xla`.
    """
    logging.set_verbosity(logging.WARNING)
    cache_dir = cache_dir or os.environ.get(
        'LWFEDSSL_JAX_CACHE', os.path.expanduser('~/.cache/lwfedssl_jax/xla'))
    jax.config.update('jax_compilation_cache_dir', cache_dir)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
