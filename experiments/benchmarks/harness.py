"""Shared by the benchmarks under `experiments/benchmarks/`: the engine's
client step built exactly once (`build_client_step`, the roofline's step),
config overrides, the PyTorch peer's spec from our config, and timing.

Importing this module imports JAX and our package, never torch; the peer's
pieces (`peer_spec`) import `torch_peer` lazily.
"""

import contextlib
import os
import sys
import time
import types
from typing import Callable, NamedTuple

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..'))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from configs import cifar10_vit_tiny, quickstart  # noqa: E402
from lwfedssl_jax import builders  # noqa: E402
from lwfedssl_jax.data import augment  # noqa: E402
from lwfedssl_jax.federated import client as client_lib  # noqa: E402
from lwfedssl_jax.federated.algorithms.base import StepContext  # noqa: E402
from lwfedssl_jax.utils.overrides import set_override  # noqa: E402
from lwfedssl_jax.utils.tree import select  # noqa: E402

# (row label, short name, config builder taking a ':key=value' string).
MODELS = (('quickstart ViT (16 px, width 64, 4 blocks)', 'quickstart', quickstart.get_config),
          ('ViT-Tiny (32 px, width 192, 12 blocks)', 'vit_tiny', cifar10_vit_tiny.get_config))


def model_config(short: str, mode: str, sets: tuple = ()):
    """The unlocked config of `MODELS` entry `short` in `mode`, `--set` applied."""
    make = {s: m for _, s, m in MODELS}[short]
    config = make(f'mode={mode}')
    config.unlock()
    apply_overrides(config, sets)
    return config


def apply_overrides(config, sets) -> None:
    """Applies `key.sub=value` strings to `config`, each value typed like the
    key's current one (`lwfedssl_jax.utils.overrides`); an unknown key raises,
    naming it."""
    for item in sets:
        key, sep, raw = item.partition('=')
        if not sep:
            raise ValueError(f'--set expects key=value, got {item!r}.')
        try:
            set_override(config, key, raw)
        except KeyError as e:
            raise KeyError(f'--set {key}: {e.args[0]}.') from None


class ClientStep(NamedTuple):
    """The engine's client step of one stage and its arguments.

    Attributes:
      args: `(frozen, trainable, target, opt_state, images [B, H, W, 3]
        uint8, key, anchor, context, momentum)`, the positional arguments
        of `fns.local.step` (`LocalStep`).
    """
    setup: builders.Setup
    spec: object
    fns: builders.StageFns
    params: dict
    args: tuple


def build_client_step(config, batch: int, stage: int = -1) -> ClientStep:
    """One client step of stage `stage` (default the LAST) on random uint8
    images, built as the engine builds it; `config.fl.batch_size` is set to
    `batch` (so the learning rate is the engine's for that batch)."""
    config.fl.batch_size = batch
    setup = builders.build(config)
    spec = setup.plan[stage]
    params = {}
    for s in setup.plan[:spec.index + 1]:
        params = builders.init_new_parts(setup, params, s, config.seed)
    fns = builders.build_stage(setup, spec, config, 1, batch)
    frozen, trainable = select(params, spec.frozen), select(params, spec.trainable)
    size = config.model.image_size
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (batch, size, size, 3),
                                                           dtype=np.uint8))
    args = (frozen, trainable, fns.local.init_target(trainable),
            fns.local.init_opt(frozen, trainable), images, jax.random.key(0),
            select(params, spec.exchanged), StepContext(), jnp.float32(0.99))
    return ClientStep(setup, spec, fns, params, args)


# ------------------------------------------------------------ given views
def _views_as_input(key, images, cfg):
    """`two_views` stand-in: `images` already holds both views `[2, B, H, W, 3]`."""
    del key, cfg
    return images[0], images[1]


def _flip_views(key, images_u8, cfg):
    """`two_views` stand-in: the batch and its horizontal mirror, normalised."""
    del key, cfg
    x = augment.to_float(images_u8)
    return x, x[:, :, ::-1]


@contextlib.contextmanager
def two_views_replaced(two_views: Callable):
    """Within the block, the client step's `augment.two_views` is
    `two_views(key, images, cfg)`: functions traced (jitted) inside it keep
    it. The engine is not changed: `client.py` reads the module global
    `augment` when it is traced, and only that global is swapped."""
    original = client_lib.augment
    client_lib.augment = types.SimpleNamespace(**{**vars(augment), 'two_views': two_views})
    try:
        yield
    finally:
        client_lib.augment = original


def views_as_input():
    """The step takes the two float views stacked `[2, B, H, W, 3]` in place
    of its uint8 images (no augmentation: the peer's protocol)."""
    return two_views_replaced(_views_as_input)


def flip_views():
    """The step's views are the batch and its mirror (cheap, and the same
    on both sides of a round comparison)."""
    return two_views_replaced(_flip_views)


def random_views(batch: int, size: int, seed: int = 1) -> np.ndarray:
    """`[2, B, H, W, 3]` float32 views, normalised like `augment`'s output."""
    raw = np.random.default_rng(seed).random((2, batch, size, size, 3), np.float32)
    return ((raw - augment.MEAN) / augment.STD).astype(np.float32)


# ------------------------------------------------------------ the peer
def peer_spec(config, setup: builders.Setup, spec):
    """The `torch_peer.PeerSpec` of our config and stage (same sizes, τ,
    AdamW and learning rate as the engine's)."""
    from experiments.benchmarks import torch_peer
    m, k, o = config.model, config.ssl.kwargs, config.optim
    if config.ssl.name != 'mocov3' or m.name != 'vit':
        raise ValueError('The PyTorch peer implements MoCo v3 on the ViT only.')
    return torch_peer.PeerSpec(
        image_size=m.image_size, patch_size=m.patch_size, width=m.width, depth=m.depth,
        num_heads=m.num_heads, mlp_dim=m.mlp_dim, pos_embed=m.pos_embed,
        proj_hidden=k.proj_hidden, proj_dim=k.proj_dim, proj_layers=k.proj_layers,
        pred_hidden=k.pred_hidden, pred_layers=k.pred_layers, pred_last_bn=k.pred_last_bn,
        temperature=k.temperature, loss_scale=2 * k.temperature if k.loss_scale_2tau else 1.0,
        learning_rate=setup.learning_rate, weight_decay=o.weight_decay, b1=o.b1, b2=o.b2,
        num_blocks=spec.num_blocks, frozen_blocks=spec.frozen_blocks)


def numpy_tree(tree):
    """The pytree with every leaf as a numpy array (what the peer loads)."""
    return jax.tree.map(np.asarray, tree)


def torch_device() -> str:
    """'cuda' when JAX runs on a GPU and torch sees one, else 'cpu'."""
    import torch
    return 'cuda' if jax.default_backend() == 'gpu' and torch.cuda.is_available() else 'cpu'


def torch_threads() -> int:
    """Sets torch's intra-op threads to the machine's cores; returns it."""
    import torch
    torch.set_num_threads(os.cpu_count())
    return torch.get_num_threads()


def machine() -> str:
    """One line: JAX devices, CPU model and cores."""
    cpu = 'CPU'
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f
                       if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return (f'{jax.device_count()} x {jax.devices()[0].platform} (JAX), {cpu}, '
            f'{os.cpu_count()} cores')


# ------------------------------------------------------------ timing
def interleaved_medians(fns: dict, repeats: int, warmup: int = 2) -> dict:
    """`{name: median seconds}`: each `fns[name]()` (which must block until
    its work is done) called `warmup` times (PyTorch's oneDNN kernels are
    set up over the first calls), then `repeats` rounds in
    which every function runs once, in turn, so that load from other
    processes on a shared machine hits all sides alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: float(np.median(ts)) for name, ts in times.items()}
