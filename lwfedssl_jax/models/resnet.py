"""ResNet-18 encoder whose residual stages are separately named parameter
subtrees, built like torchvision's `resnet18` (without its `fc`), behind the
backbone contract (`models/backbone.py`).

Paper: LW-FedSSL (arXiv 2401.11647) §3.3. For ResNet the paper's "layers" are
the four residual stages (`layer1`..`layer4`, two BasicBlocks each); a
layer-wise run adds one stage at a time. The pooled feature of the first k
stages is `width * 2**(k-1)` wide (64, 128, 256, 512 at the default width),
not the 512 the SSL heads take, so every stage with k < 4 trains a temporary
bias-free linear *adapter* mapping it to 512; the heads (projector H)
therefore keep one shape and carry over from stage to stage.

Parameter tree (top-level keys, all float32; w = `width`)::

    'stem'         conv (3x3 stride 1 'cifar', 7x7 stride 2 'imagenet'),
                   GroupNorm; belongs to block group 0
    'layer1'       2 BasicBlocks, w channels, stride 1
    'layer2'       2 BasicBlocks, 2w channels, first block stride 2 with a
                   1x1 conv + GroupNorm shortcut
    'layer3'       same, 4w channels
    'layer4'       same, 8w channels (= head_width)
    'adapter_064'  {'kernel': [w, 8w]}      (named by the input width,
    'adapter_128'  {'kernel': [2w, 8w]}      `adapter_{w:03d}`; one per
    'adapter_256'  {'kernel': [4w, 8w]}      width below head_width)

Each BasicBlock holds `conv1`, `norm1`, `conv2`, `norm2` and, when it
changes shape, `down_conv`, `down_norm` (torchvision's `downsample`).

Design choices:

* Normalisation is `flax.linen.GroupNorm(num_groups=norm_groups)` (affine
  scale and bias, flax's default epsilon 1e-6) where torchvision uses
  BatchNorm: no running statistics, so the parameters are the whole state,
  FedAvg of parameters is exact and a frozen prefix needs no `batch_stats`.
  The alternatives were worse here: batch statistics only would make a
  frozen prefix's output, and every evaluation feature, depend on the
  batch it sits in; averaged running statistics as exchanged state would
  need a mutable collection through the step, the frozen prefix (updated
  or not?) and the aggregator, and FedAvg of BatchNorm statistics across
  non-IID clients is a known source of error (Hsieh et al., 2020, who
  recommend GroupNorm for federated learning). What travels is the
  parameters, and the accounting counts exactly them; the paper's PyTorch
  state dicts would also carry BatchNorm's running mean and variance
  (2 floats per channel), the whole of the 0.012 "GB" by which Table 4's
  end-to-end 11.09 exceeds our 11.08 (experiments/backbones/README.md).
  GroupNorm's affine parameters are as many as BatchNorm's, so the
  parameter count equals torchvision's resnet18 without `fc` (11,176,512
  with the 'imagenet' stem at width 64).
* Convolutions have no bias and He-normal (fan_out) init, as torchvision's
  `kaiming_normal_(mode='fan_out', nonlinearity='relu')`; GroupNorm starts
  at scale 1, bias 0 (torchvision's `zero_init_residual=False`).
* Padding is explicit (1 for 3x3, 3 for the 7x7 stem conv, 1 for the max
  pool), as in PyTorch: flax's 'SAME' would pad a stride-2 conv on an even
  input asymmetrically. Convolutions go through `models/conv.py`, which
  works around two XLA:CPU slow paths (together a 26x slower ResNet-18
  round at 16 px: 128.9 s against 4.95 s).
* The adapter of a stage is trained and exchanged with the heads (FedAvg of
  heads on top of per-client adapters would average heads fitted to
  different inputs), so it is counted in communication and FLOPs.
* Stem 'cifar' (3x3 stride 1 conv, no max-pool) is the usual CIFAR variant;
  'imagenet' is torchvision's (7x7 stride 2 conv, 3x3 stride 2 max-pool).
"""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from lwfedssl_jax.errors import ConfigError
from lwfedssl_jax.models import backbone
from lwfedssl_jax.models.conv import conv2d

STEM = 'stem'
LAYER_PREFIX = 'layer'
ADAPTER_PREFIX = 'adapter_'
STEMS = ('cifar', 'imagenet')
DEPTH = 4

# torchvision: kaiming_normal_(mode='fan_out', nonlinearity='relu').
_conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
# The temporary adapter: xavier-uniform like the heads' linear layers.
_adapter_init = nn.initializers.xavier_uniform()


def layer_name(index: int) -> str:
    """Top-level parameter key of residual stage `index` in [0, 4) (`layer1`)."""
    return f'{LAYER_PREFIX}{index + 1}'


def adapter_name(width: int) -> str:
    """Top-level parameter key of the adapter from feature width `width`."""
    return f'{ADAPTER_PREFIX}{width:03d}'


class ResNetConfig(NamedTuple):
    """Static ResNet-18 hyperparameters (hashable, so it can key jit caches).

    Attributes:
      image_size: side of the square input images.
      stem: 'cifar' (3x3 stride 1 conv, no max-pool) or 'imagenet'
        (torchvision: 7x7 stride 2 conv, 3x3 stride 2 max-pool).
      width: channels of `layer1` (w); the stages have w, 2w, 4w, 8w.
      norm_groups: GroupNorm groups; must divide every channel count.
    """
    image_size: int = 32
    stem: str = 'cifar'
    width: int = 64
    norm_groups: int = 32

    @property
    def stem_stride(self) -> int:
        """Downsampling of the stem (conv stride x max-pool stride)."""
        return 1 if self.stem == 'cifar' else 4

    @property
    def downsampling(self) -> int:
        """Total downsampling of the encoder: stem, then three stride-2 stages."""
        return self.stem_stride * 2 ** (DEPTH - 1)

    def validate(self) -> 'ResNetConfig':
        """Raises `ConfigError` for impossible values; returns self."""
        if self.stem not in STEMS:
            raise ConfigError('model.stem', self.stem, f'unknown; choices: {STEMS}.')
        for field in ('image_size', 'width', 'norm_groups'):
            if getattr(self, field) < 1:
                raise ConfigError(f'model.{field}', getattr(self, field), 'must be >= 1.')
        channels = tuple(self.width * 2 ** i for i in range(DEPTH))
        bad = [c for c in channels if c % self.norm_groups]
        if bad:
            raise ConfigError(
                'model.norm_groups', self.norm_groups, f'must divide every channel '
                f'count {channels} (model.width={self.width}); {bad[0]} is not a '
                'multiple.', f'pick a divisor of model.width={self.width}, e.g. '
                f'{max(d for d in range(1, min(self.width, 32) + 1) if self.width % d == 0)}.')
        if self.image_size % self.downsampling:
            raise ConfigError(
                'model.image_size', self.image_size, f'must be a multiple of '
                f'{self.downsampling}, the total downsampling of the '
                f'{self.stem!r} stem and the three stride-2 stages.',
                "e.g. 32 with model.stem='cifar', 224 with model.stem='imagenet'.")
        return self


class Conv(nn.Module):
    """Bias-free k x k convolution (`conv2d`), He fan-out init:
    `[B, H, W, C_in]` -> `[B, H', W', features]`. Its parameter is flax
    `nn.Conv`'s (`kernel` `[k, k, C_in, features]`)."""
    features: int
    kernel: int
    stride: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.param('kernel', _conv_init, (self.kernel, self.kernel, x.shape[-1],
                                              self.features))
        return conv2d(x, w, self.stride)


class Stem(nn.Module):
    """Conv, GroupNorm, ReLU (and torchvision's max-pool for 'imagenet').

    `[B, H, W, 3]` float -> `[B, H/s, W/s, width]` with s = 1 ('cifar') or
    4 ('imagenet').
    """
    cfg: ResNetConfig

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        c = self.cfg
        if c.stem == 'cifar':
            x = Conv(c.width, 3, 1, name='conv')(images)
        else:
            x = Conv(c.width, 7, 2, name='conv')(images)
        x = nn.relu(nn.GroupNorm(num_groups=c.norm_groups, name='norm')(x))
        if c.stem == 'imagenet':
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        return x


class BasicBlock(nn.Module):
    """torchvision's BasicBlock with GroupNorm.

    relu(norm2(conv2(relu(norm1(conv1(x))))) + shortcut(x)); the shortcut is
    a 1x1 conv + GroupNorm when the block changes shape, else identity.
    `[B, H, W, C]` -> `[B, H/stride, W/stride, features]`.
    """
    features: int
    stride: int
    norm_groups: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        g = self.norm_groups
        y = Conv(self.features, 3, self.stride, name='conv1')(x)
        y = nn.relu(nn.GroupNorm(num_groups=g, name='norm1')(y))
        y = Conv(self.features, 3, 1, name='conv2')(y)
        y = nn.GroupNorm(num_groups=g, name='norm2')(y)
        if self.stride != 1 or x.shape[-1] != self.features:
            x = Conv(self.features, 1, self.stride, name='down_conv')(x)
            x = nn.GroupNorm(num_groups=g, name='down_norm')(x)
        return nn.relu(x + y)


class ResLayer(nn.Module):
    """One residual stage: two BasicBlocks (`block1`, `block2`); the first
    one has stride `stride`. `[B, H, W, C]` -> `[B, H/stride, W/stride, features]`."""
    features: int
    stride: int
    norm_groups: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = BasicBlock(self.features, self.stride, self.norm_groups, name='block1')(x)
        return BasicBlock(self.features, 1, self.norm_groups, name='block2')(x)


class ResNetEncoder(backbone.Backbone):
    """Functional ResNet-18 behind the backbone contract (`models/backbone.py`).

    Blocks are the four residual stages; `stem` is the input part; there is
    no shared part. Stages change the activation's shape, so no block can be
    skipped (`blocks_keep_shape = False`: no depth dropout). The features of
    the first 1-3 stages reach the heads through a stage's adapter.
    """
    name = 'resnet18'
    depth = DEPTH
    input_parts = (STEM,)
    shared_parts = ()
    blocks_keep_shape = False

    def __init__(self, cfg: ResNetConfig):
        self.cfg = cfg.validate()
        self._stem = Stem(cfg)
        self._layers = tuple(
            ResLayer(self.feature_width(i + 1), 1 if i == 0 else 2, cfg.norm_groups)
            for i in range(DEPTH))
        self._adapter = nn.Dense(self.head_width, use_bias=False,
                                 kernel_init=_adapter_init)

    # ------------------------------------------------------------ the parts
    def block_part(self, index: int) -> str:
        return layer_name(index)

    def feature_width(self, num_blocks: int) -> int:
        """Channels of stage `num_blocks` (1..4): `width * 2**(num_blocks-1)`."""
        if not 1 <= num_blocks <= DEPTH:
            raise ValueError(f'num_blocks={num_blocks}: a ResNet-18 feature comes '
                             f'after 1..{DEPTH} stages.')
        return self.cfg.width * 2 ** (num_blocks - 1)

    def adapter_parts(self, num_blocks: int) -> tuple[str, ...]:
        """`('adapter_{D:03d}',)` for feature width D < head_width, else ()."""
        width = self.feature_width(num_blocks)
        return (adapter_name(width),) if width != self.head_width else ()

    def _adapter_widths(self) -> dict:
        """Adapter name -> its input width, in increasing width."""
        return {a: self.feature_width(n) for n in range(1, DEPTH + 1)
                for a in self.adapter_parts(n)}

    def part_names(self) -> tuple[str, ...]:
        """stem, layer1..layer4, then the adapters in increasing width (part i
        is initialised with `fold_in(key, i)`: keep this order fixed)."""
        return ((STEM,) + tuple(layer_name(i) for i in range(DEPTH))
                + tuple(self._adapter_widths()))

    def config_dict(self) -> dict:
        return {'name': self.name, **self.cfg._asdict()}

    # ------------------------------------------------------- spatial sizes
    def _input_shape(self, index: int) -> tuple[int, int]:
        """(side, channels) of the activation entering stage `index` (0-based)."""
        side = self.cfg.image_size // self.cfg.stem_stride
        if index == 0:
            return side, self.cfg.width
        return side // 2 ** (index - 1), self.feature_width(index)

    def _output_side(self, index: int) -> int:
        """Side of the activation leaving stage `index` (0-based)."""
        return self.cfg.image_size // self.cfg.stem_stride // 2 ** index

    # ----------------------------------------------------------------- init
    def init_part(self, key: jax.Array, name: str) -> dict:
        """Fresh parameters of one part (`stem`, `layer3`, `adapter_128`)."""
        c = self.cfg
        if name == STEM:
            x = jnp.zeros((1, c.image_size, c.image_size, 3), jnp.float32)
            return self._stem.init(key, x)['params']
        layers = [layer_name(i) for i in range(DEPTH)]
        if name in layers:
            index = layers.index(name)
            side, channels = self._input_shape(index)
            x = jnp.zeros((1, side, side, channels), jnp.float32)
            return self._layers[index].init(key, x)['params']
        adapters = self._adapter_widths()
        if name in adapters:
            x = jnp.zeros((1, adapters[name]), jnp.float32)
            return self._adapter.init(key, x)['params']
        raise ValueError(f'Unknown ResNet part {name!r}; expected one of '
                         f'{self.part_names()}.')

    # ----------------------------------------------------------- accounting
    def part_forward_macs(self, name: str) -> int:
        """Multiply-accumulates of one part's forward pass for ONE image.

        fvcore's convention (the paper's GFLOPs, §7.1): a conv costs
        `H_out W_out C_out k^2 C_in`; GroupNorm, ReLU, max-pool, the residual
        additions and the global average pool cost 0; an adapter costs
        `D * head_width`.
        """
        c = self.cfg
        if name == STEM:
            k, stride = (3, 1) if c.stem == 'cifar' else (7, 2)
            side = c.image_size // stride
            return side * side * c.width * k * k * 3
        layers = [layer_name(i) for i in range(DEPTH)]
        if name in layers:
            index = layers.index(name)
            _, c_in = self._input_shape(index)
            c_out = self.feature_width(index + 1)
            pixels = self._output_side(index) ** 2
            macs = pixels * c_out * 9 * c_in            # block1.conv1
            macs += 3 * pixels * c_out * 9 * c_out      # block1.conv2, block2.conv1/2
            if index > 0:
                macs += pixels * c_out * c_in           # block1.down_conv (1x1)
            return macs
        adapters = self._adapter_widths()
        if name in adapters:
            return adapters[name] * self.head_width
        raise ValueError(f'Unknown ResNet part {name!r}.')

    # -------------------------------------------------------------- forward
    def run_segment(self, params: dict, x: jax.Array, start: int,
                    stop: int, keep=None, remat: str = 'none') -> jax.Array:
        """Runs stages `[start, stop)`; `start == 0` means `x` is images.

        Args:
          params: dict holding (at least) the parts this segment uses.
          x: `[B, H, W, 3]` float images if `start == 0`, else the activation
            `[B, H', W', C]` output by stage `start - 1`.
          start, stop: static stage indices, `0 <= start <= stop <= 4`. With
            `start == stop == 0` the stem runs alone if `params` holds it
            (else `x` is returned unchanged).
          keep: must be None: the stages change shape, so none can be
            skipped (depth dropout needs `blocks_keep_shape`).
          remat: rematerialisation of each stage under differentiation
            (`backbone.REMAT_POLICIES`; 'none' stores every activation).

        Returns:
          `[B, H', W', C]` after stage `stop - 1` (or after the stem, or `x`
          unchanged, for an empty segment).
        """
        if keep is not None:
            raise ValueError('ResNet stages change the activation shape, so they '
                             'cannot be skipped: depth dropout needs shape-preserving '
                             'blocks (keep must be None).')
        if not 0 <= start <= stop <= DEPTH:
            raise ValueError(f'Bad segment [{start}, {stop}) of a {DEPTH}-stage ResNet.')
        if start == 0 and (stop > 0 or STEM in params):
            x = self._stem.apply({'params': params[STEM]}, x)
        for i in range(start, stop):
            run = backbone.remat_block(
                lambda p, h, layer=self._layers[i]: layer.apply({'params': p}, h), remat)
            x = run(params[layer_name(i)], x)
        return x

    def pool(self, params: dict, h: jax.Array) -> jax.Array:
        """Global average pool: `[B, H', W', C]` -> `[B, C]` (no parameters)."""
        del params
        return jnp.mean(h, axis=(1, 2))

    def head_input(self, params: dict, h: jax.Array, num_blocks: int) -> jax.Array:
        """Stage `num_blocks`' output -> `[B, head_width]`: the pooled feature,
        through the stage's adapter when its width is below `head_width`.

        The paper (§3.3) appends a temporary linear layer that reshapes the
        output width to 512 so that the projector H carries over between
        stages. It is bias-free: the projector's first (bias-free) Linear is
        followed by BatchNorm, which removes any constant offset.
        """
        f = self.pool(params, h)
        for name in self.adapter_parts(num_blocks):
            f = self._adapter.apply({'params': params[name]}, f)
        return f


backbone.register('resnet18', ResNetConfig()._asdict(),
                  lambda **fields: ResNetEncoder(ResNetConfig(**fields)),
                  tiny=dict(image_size=8, width=8, norm_groups=4))
