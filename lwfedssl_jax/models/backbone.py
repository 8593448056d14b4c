"""The backbone contract: what the stage plan, the client step, the accounting
and export need from an encoder, and the `MODELS` registry.

Paper §1.1 and §3.3. An encoder F is a stack of S *blocks* (the paper's
"layers": ViT transformer blocks, ResNet residual stages). Every stage of a
layer-wise or progressive run adds a group of blocks; earlier ones run as a
frozen prefix. Each block is one named parameter subtree (a *part*); a few
more parts surround them:

* input parts run before block 0 and belong to block group 0 (the ViT's
  patch/class/position embedding, the ResNet's stem);
* shared parts follow the top present block in every stage, and are trained
  and exchanged with the heads (the ViT's final LayerNorm; none for ResNet);
* adapter parts map the pooled feature of the first k blocks to the heads'
  input width when the two differ (the ResNet's temporary linear layer,
  paper §3.3): new in every stage that needs one, trained and exchanged in
  it, dropped when the stage ends.

A backbone is an object with the attributes and pure methods below; every
method takes explicit parameter dicts, so it can run inside `jit`, `vmap`,
`lax.scan` and `jax.grad` with any subset of the parts differentiated.
`Backbone` supplies the parts of the contract that follow from the rest.
Nothing outside `models/` names a ViT or ResNet part.
"""

from typing import Callable, NamedTuple

import jax

from lwfedssl_jax.errors import ConfigError, did_you_mean


# Rematerialisation of the blocks of a differentiated segment
# (`config.optim.remat`): 'none' stores every activation for the backward
# pass; 'blocks' stores only each block's input and recomputes the block in
# the backward pass (`jax.checkpoint`: about one more forward of the
# trainable segment, activation memory of one block instead of all);
# 'dots_saveable' also keeps the matmul outputs
# (`jax.checkpoint_policies.dots_saveable`: recomputes only the cheap
# elementwise work and norms).
REMAT_POLICIES = ('none', 'blocks', 'dots_saveable')


def check_remat(remat: str) -> str:
    """`remat` if it is one of `REMAT_POLICIES`.

    Raises:
      ConfigError: on `optim.remat`, naming the choices.
    """
    if remat not in REMAT_POLICIES:
        raise ConfigError('optim.remat', remat, f'unknown; choices: {list(REMAT_POLICIES)}.'
                          + did_you_mean(str(remat), REMAT_POLICIES))
    return remat


def remat_block(block_fn: Callable, remat: str) -> Callable:
    """`block_fn(params, x) -> y` under rematerialisation policy `remat`.

    Raises:
      ConfigError: `remat` not in `REMAT_POLICIES`.
    """
    if check_remat(remat) == 'none':
        return block_fn
    if remat == 'blocks':
        return jax.checkpoint(block_fn)
    return jax.checkpoint(block_fn, policy=jax.checkpoint_policies.dots_saveable)


class Backbone:
    """Base class of the registered encoders.

    Subclasses set `name`, `depth` (blocks S), `input_parts`, `shared_parts`,
    `blocks_keep_shape` and implement `block_part`, `feature_width`,
    `init_part`, `part_names`, `run_segment`, `pool`, `part_forward_macs`
    and `config_dict`; they may override `adapter_parts` and `head_input`.

    Attributes:
      name: registry key (`config.model.name`).
      depth: number of blocks S.
      input_parts: parts run before block 0 (block group 0 holds them).
      shared_parts: parts after the top block, trained in every stage.
      blocks_keep_shape: whether a block maps its input to the same shape,
        so that it can be skipped (depth dropout); False for ResNet stages.
    """
    name: str
    depth: int
    input_parts: tuple[str, ...] = ()
    shared_parts: tuple[str, ...] = ()
    blocks_keep_shape: bool = True

    # ------------------------------------------------------------ the parts
    def block_part(self, index: int) -> str:
        """Top-level parameter key of block `index` in `[0, depth)`."""
        raise NotImplementedError

    def block_parts(self, index: int) -> tuple[str, ...]:
        """Parts that block `index` brings: its own, and the input parts with
        block 0."""
        return (self.input_parts if index == 0 else ()) + (self.block_part(index),)

    def adapter_parts(self, num_blocks: int) -> tuple[str, ...]:
        """Parts mapping the feature of the first `num_blocks` blocks to
        `head_width` (empty when `feature_width(num_blocks) == head_width`)."""
        del num_blocks
        return ()

    def encoder_parts(self, num_blocks: int) -> tuple[str, ...]:
        """The parts `features(params, images, num_blocks)` reads: input
        parts, the first `num_blocks` blocks, shared parts (no adapter)."""
        return (tuple(self.input_parts)
                + tuple(self.block_part(i) for i in range(num_blocks))
                + tuple(self.shared_parts))

    def part_names(self) -> tuple[str, ...]:
        """Every part (adapters included) in forward order; part i is
        initialised with `fold_in(key, i)`."""
        raise NotImplementedError

    def feature_width(self, num_blocks: int) -> int:
        """Width D of the pooled feature of the first `num_blocks` blocks."""
        raise NotImplementedError

    @property
    def head_width(self) -> int:
        """Input width of the SSL heads: the full encoder's feature width."""
        return self.feature_width(self.depth)

    # ----------------------------------------------------------------- init
    def init_part(self, key: jax.Array, name: str) -> dict:
        """Fresh parameters of one part."""
        raise NotImplementedError

    def init(self, key: jax.Array) -> dict:
        """Every block, input and shared part (no adapters): a full encoder."""
        parts = self.encoder_parts(self.depth)
        return {name: self.init_part(jax.random.fold_in(key, i), name)
                for i, name in enumerate(self.part_names()) if name in parts}

    # -------------------------------------------------------------- forward
    def run_segment(self, params: dict, x: jax.Array, start: int, stop: int,
                    keep=None, remat: str = 'none') -> jax.Array:
        """Runs blocks `[start, stop)` (static ints); `start == 0` means `x`
        is `[B, H, W, 3]` float images and the input parts run first.

        `keep`, only for `blocks_keep_shape` backbones, skips blocks (depth
        dropout): a `[stop - start]` bool array (`lax.cond` per block) or a
        tuple of Python bools (skipped at trace time, for cost measurement).
        `remat` (`REMAT_POLICIES`, via `remat_block`) rematerialises each
        block when the segment is differentiated; the values are the same.
        The matmuls run in the dtype of `params` and `x` (the client step
        casts both for `optim.compute_dtype`); normalisation statistics stay
        float32. Returns the activation after block `stop - 1` (`x` if
        empty).
        """
        raise NotImplementedError

    def pool(self, params: dict, h: jax.Array) -> jax.Array:
        """Block output -> `[B, D]` feature (what evaluation uses)."""
        raise NotImplementedError

    def head_input(self, params: dict, h: jax.Array, num_blocks: int) -> jax.Array:
        """Block output of the first `num_blocks` blocks -> `[B, head_width]`:
        the pooled feature (a backbone with adapters overrides this to run
        the stage's adapter)."""
        del num_blocks
        return self.pool(params, h)

    def features(self, params: dict, images: jax.Array, num_blocks: int) -> jax.Array:
        """`[B, H, W, 3]` float -> `[B, feature_width(num_blocks)]`."""
        return self.pool(params, self.run_segment(params, images, 0, num_blocks))

    # ----------------------------------------------------------- accounting
    def part_forward_macs(self, name: str) -> int:
        """Multiply-accumulates of one part's forward pass for ONE image
        (fvcore's convention, the paper's GFLOPs: matrix products and
        convolutions; norms, activations and additions cost 0)."""
        raise NotImplementedError

    def config_dict(self) -> dict:
        """The `config.model` fields that rebuild this backbone (`name` too)."""
        raise NotImplementedError


class Entry(NamedTuple):
    """A registered backbone.

    Attributes:
      defaults: its `config.model` fields (without `name`) and defaults.
      make: `make(**fields) -> Backbone` (raises `ConfigError` for
        impossible values).
      tiny: field overrides of a small instance (contract tests, smoke runs).
    """
    defaults: dict
    make: Callable[..., Backbone]
    tiny: dict


MODELS: dict[str, Entry] = {}


def register(name: str, defaults: dict, make: Callable[..., Backbone],
             tiny: dict) -> None:
    """Adds backbone `name` to `MODELS` (see `Entry`)."""
    MODELS[name] = Entry(dict(defaults), make, dict(tiny))


def model_fields(name: str) -> dict:
    """`config.model` defaults of backbone `name` (without `name`)."""
    _check_name(name)
    return dict(MODELS[name].defaults)


def make_backbone(model: dict) -> Backbone:
    """The backbone that `config.model` (a dict with `name`) describes.

    Raises `ConfigError` for an unknown name, a key the backbone does not
    take, a missing key, or a value the backbone refuses.
    """
    model = dict(model)
    name = model.pop('name', None)
    _check_name(name)
    defaults, make, _ = MODELS[name]
    for key in model:
        if key not in defaults:
            raise ConfigError(
                f'model.{key}', model[key], f'is not a field of model.name={name!r}; '
                f'its fields: {sorted(defaults)}.' + did_you_mean(key, defaults),
                f'pick the backbone with the config variant (e.g. '
                f'configs/quickstart.py:model={name}), which sets its own fields.')
    missing = sorted(set(defaults) - set(model))
    if missing:
        raise ConfigError(f'model.{missing[0]}', None, f'is missing for '
                          f'model.name={name!r}; its fields: {sorted(defaults)}.')
    for key, value in model.items():
        want = type(defaults[key])
        if type(value) is not want and not (want is float and type(value) is int):
            raise ConfigError(f'model.{key}', value, f'must be of type {want.__name__} '
                              f'(model.name={name!r}).')
    return make(**model)


def _check_name(name) -> None:
    if name not in MODELS:
        raise ConfigError('model.name', name, f'unknown backbone; choices: '
                          f'{sorted(MODELS)}.' + did_you_mean(str(name), MODELS))
