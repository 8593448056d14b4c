"""Test set-up: 8 fake CPU devices (for sharding tests), repo root importable
(for `configs`), and the persistent compilation cache (compiles dominate)."""

import os
import sys

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                           + ' --xla_force_host_platform_device_count=8').strip()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lwfedssl_jax import platform  # noqa: E402  (after XLA_FLAGS on purpose)

platform.setup()
