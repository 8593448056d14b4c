"""Vision Transformer encoder whose blocks are separately named parameter subtrees,
built like MoCo v3's reference ViT (`vits.py`), behind the backbone contract.

Paper: LW-FedSSL (arXiv 2401.11647) §3.1. Layer-wise training appends one block
(or a group of blocks) per stage, trains it, and freezes it afterwards, so the
encoder must be runnable *in segments*: the frozen prefix once, forward-only,
and the trainable suffix under `jax.grad`. That is why the encoder is not one
`nn.scan` over blocks but an explicit list of modules with stable names.

Parameter tree (top-level keys, all float32)::

    'embed'      patch projection (conv p x p x 3 -> D), class token [1, 1, D],
                 and with `pos_embed='learned'` a position embedding
                 [1, T, D]; belongs to block group 0
    'block_00'   pre-LN transformer block (attention + MLP)
    ...
    'block_{L-1}'
    'norm'       LayerNorm applied to the class token of the *top present* block

Design choice (paper §8 item 2): the feature fed to the SSL heads, and to the
evaluators, is the class token of the top present block after `norm`. `norm`
is shared by all stages and is trained and exchanged together with the heads
(384 parameters at width 192; invisible in the paper's resource figures).

MoCo v3's model: the patch-projection kernel is uniform with the fan of a
3 x p x p patch, U(+-sqrt(6 / (3 p^2 + D))) (flax's xavier would count p^2 D
as the fan-out); q, k, v and the other linear layers are xavier-uniform with
zero bias; the class token is N(0, 1e-6); the position embedding is by
default MoCo v3's fixed 2-D sine-cosine table (`pos_embed='sincos'`, a
constant, not a parameter: it is neither trained nor sent), or a learned
N(0, 0.02) table (`pos_embed='learned'`, trained and exchanged with `embed`).
"""

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lwfedssl_jax.errors import ConfigError
from lwfedssl_jax.models import backbone

EMBED = 'embed'
NORM = 'norm'


BLOCK_PREFIX = 'block_'


def block_name(index: int) -> str:
    """Top-level parameter key of transformer block `index` (`block_03`)."""
    return f'{BLOCK_PREFIX}{index:02d}'


class ViTConfig(NamedTuple):
    """Static ViT hyperparameters (hashable, so it can key jit caches)."""
    image_size: int = 32
    patch_size: int = 4
    width: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_dim: int = 768
    pos_embed: str = 'sincos'

    @property
    def num_tokens(self) -> int:
        """Patches plus the class token."""
        return (self.image_size // self.patch_size) ** 2 + 1

    def validate(self) -> 'ViTConfig':
        """Raises `ConfigError` for impossible shapes; returns self."""
        for field in ('image_size', 'patch_size', 'width', 'depth',
                      'num_heads', 'mlp_dim'):
            if getattr(self, field) < 1:
                raise ConfigError(f'model.{field}', getattr(self, field), 'must be >= 1.')
        if self.image_size % self.patch_size:
            raise ConfigError(
                'model.patch_size', self.patch_size, f'must divide model.image_size='
                f'{self.image_size} (patches tile the image).', 'e.g. 4 for 32x32 images.')
        if self.width % self.num_heads:
            raise ConfigError('model.num_heads', self.num_heads,
                              f'must divide model.width={self.width}.')
        if self.pos_embed not in POS_EMBEDS:
            raise ConfigError('model.pos_embed', self.pos_embed,
                              f'unknown; choices: {POS_EMBEDS}.')
        if self.pos_embed == 'sincos' and self.width % 4:
            raise ConfigError('model.width', self.width, 'must be a multiple of 4 for '
                              "the 2-D sine-cosine position embedding (sin and cos of "
                              "both axes).", "or set --config.model.pos_embed=learned.")
        return self


POS_EMBEDS = ('sincos', 'learned')

VIT_TINY = ViTConfig(image_size=32, patch_size=4, width=192, depth=12,
                     num_heads=3, mlp_dim=768)

# Linear layers: xavier-uniform weights, zero bias (MoCo v3 / timm ViT init).
_dense_init = nn.initializers.xavier_uniform()


def patch_kernel_init(patch_size: int):
    """MoCo v3's patch-projection init: U(+-sqrt(6 / (3 p^2 + D))), the
    xavier bound of a 3 x p x p patch mapped to D channels."""
    def init(key, shape, dtype=jnp.float32):
        bound = np.sqrt(6.0 / (3 * patch_size ** 2 + shape[-1]))
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


def sincos_position_embedding(grid: int, width: int,
                              temperature: float = 10000.0) -> np.ndarray:
    """MoCo v3's fixed 2-D sine-cosine table `[1, 1 + grid^2, width]`.

    Patch (row y, column x) gets `[sin(y w), cos(y w), sin(x w), cos(x w)]`
    with `w_i = temperature^(-i / (width / 4))`, i < width / 4 (MoCo v3's
    `build_2d_sincos_position_embedding`, whose meshgrid puts the row index
    in its first half); the class token's row is zero.
    """
    omega = 1.0 / temperature ** (np.arange(width // 4, dtype=np.float64) / (width // 4))
    y, x = np.meshgrid(np.arange(grid), np.arange(grid), indexing='ij')
    out_y = y.reshape(-1, 1) * omega                    # [P, D/4]
    out_x = x.reshape(-1, 1) * omega
    table = np.concatenate([np.sin(out_y), np.cos(out_y), np.sin(out_x),
                            np.cos(out_x)], axis=1)
    return np.concatenate([np.zeros((1, width)), table])[None].astype(np.float32)


class Embed(nn.Module):
    """Patch projection + class token + position embedding (fixed or learned).

    Input `[B, H, W, 3]` float -> tokens `[B, T, D]` with T = (H/p)^2 + 1.
    """
    cfg: ViTConfig

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        c = self.cfg
        x = nn.Conv(c.width, (c.patch_size, c.patch_size),
                    strides=(c.patch_size, c.patch_size), padding='VALID',
                    kernel_init=patch_kernel_init(c.patch_size), name='patch')(images)
        b = x.shape[0]
        x = x.reshape(b, -1, c.width)                       # [B, P, D]
        cls = self.param('cls', nn.initializers.normal(1e-6), (1, 1, c.width))
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, c.width)), x], 1)
        if c.pos_embed == 'learned':
            pos = self.param('pos', nn.initializers.normal(0.02),
                             (1, c.num_tokens, c.width))
        else:   # a constant: neither trained nor exchanged
            pos = sincos_position_embedding(c.image_size // c.patch_size, c.width)
        return x + pos                                      # [B, T, D]


class Block(nn.Module):
    """Pre-LN transformer block: x + MHSA(LN(x)); x + MLP(LN(x)). `[B,T,D]`."""
    cfg: ViTConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.cfg
        y = nn.LayerNorm(epsilon=1e-6, name='ln_1')(x)
        y = nn.MultiHeadDotProductAttention(
            num_heads=c.num_heads, kernel_init=_dense_init, name='attn')(y, y)
        x = x + y
        y = nn.LayerNorm(epsilon=1e-6, name='ln_2')(x)
        y = nn.Dense(c.mlp_dim, kernel_init=_dense_init, name='fc_1')(y)
        y = nn.gelu(y, approximate=False)
        y = nn.Dense(c.width, kernel_init=_dense_init, name='fc_2')(y)
        return x + y


class ViTEncoder(backbone.Backbone):
    """Functional ViT behind the backbone contract (`models/backbone.py`).

    Blocks are transformer blocks; `embed` is the input part and `norm` the
    shared part; the feature width is `width` whatever the blocks present,
    so no adapter is needed.
    """
    name = 'vit'
    input_parts = (EMBED,)
    shared_parts = (NORM,)
    blocks_keep_shape = True

    def __init__(self, cfg: ViTConfig):
        self.cfg = cfg.validate()
        self.depth = cfg.depth
        self._embed = Embed(cfg)
        self._block = Block(cfg)
        self._norm = nn.LayerNorm(epsilon=1e-6)

    def block_part(self, index: int) -> str:
        return block_name(index)

    def feature_width(self, num_blocks: int) -> int:
        del num_blocks
        return self.cfg.width

    def config_dict(self) -> dict:
        return {'name': self.name, **self.cfg._asdict()}

    # ----------------------------------------------------------------- init
    def init_part(self, key: jax.Array, name: str) -> dict:
        """Fresh parameters of one top-level part (`embed`, `block_07`, `norm`)."""
        c = self.cfg
        if name == EMBED:
            x = jnp.zeros((1, c.image_size, c.image_size, 3), jnp.float32)
            return self._embed.init(key, x)['params']
        tokens = jnp.zeros((1, c.num_tokens, c.width), jnp.float32)
        if name == NORM:
            return self._norm.init(key, tokens[:, 0])['params']
        if name.startswith('block_') and 0 <= int(name[6:]) < c.depth:
            return self._block.init(key, tokens)['params']
        raise ValueError(f'Unknown ViT part {name!r}; expected {EMBED!r}, '
                         f'{NORM!r} or block_00..{block_name(c.depth - 1)}.')

    def part_names(self) -> tuple[str, ...]:
        """Every top-level key of a full encoder, in forward order."""
        return (EMBED,) + tuple(block_name(i) for i in range(self.depth)) + (NORM,)

    def part_forward_macs(self, name: str) -> int:
        """Multiply-accumulates of one part's forward pass for ONE image.

        Counts matrix products only (fvcore's convention, which the paper's
        GFLOPs use, §7.1; the position embedding is an addition, fixed or
        learned): the patch projection, and per block the q/k/v and
        output projections (4 T D^2), the attention scores and weighted sum
        (2 T^2 D) and the MLP (2 T D M). Norms, softmax, GELU and additions
        are not counted; `norm` costs 0.
        """
        c = self.cfg
        t, d = c.num_tokens, c.width
        if name == EMBED:
            return (t - 1) * c.patch_size ** 2 * 3 * d
        if name == NORM:
            return 0
        if name.startswith('block_'):
            return 4 * t * d * d + 2 * t * t * d + 2 * t * d * c.mlp_dim
        raise ValueError(f'Unknown ViT part {name!r}.')

    # -------------------------------------------------------------- forward
    def run_segment(self, params: dict, x: jax.Array, start: int,
                    stop: int, keep: jax.Array | None = None) -> jax.Array:
        """Runs blocks `[start, stop)`; `start == 0` means `x` is images.

        Args:
          params: dict holding (at least) the parts this segment uses.
          x: `[B, H, W, 3]` float images if `start == 0`, else tokens
            `[B, T, D]` output by block `start - 1`.
          start, stop: static block indices, `0 <= start <= stop <= depth`.
          keep: optional `[stop - start]` bool: a block whose entry is False
            is skipped (identity; depth dropout). Each block is a
            `lax.cond`, so a skipped block is not computed when the
            predicate is a scalar at run time (not under `vmap`, which turns
            `cond` into `select` and computes both branches). A tuple of
            Python bools skips blocks at trace time (for cost measurement).

        Returns:
          Tokens `[B, T, D]` after block `stop - 1` (or `x` unchanged if the
          segment is empty and `start > 0`).
        """
        if start == 0 and (stop > 0 or EMBED in params):
            x = self._embed.apply({'params': params[EMBED]}, x)
        for i in range(start, stop):
            block = functools.partial(self._block.apply, {'params': params[block_name(i)]})
            if keep is None or (isinstance(keep, tuple) and keep[i - start]):
                x = block(x)
            elif not isinstance(keep, tuple):
                x = jax.lax.cond(keep[i - start], block, lambda t: t, x)
        return x

    def pool(self, params: dict, tokens: jax.Array) -> jax.Array:
        """`[B, T, D]` tokens -> `[B, D]` LayerNorm'd class token."""
        return self._norm.apply({'params': params[NORM]}, tokens[:, 0])


backbone.register('vit', ViTConfig()._asdict(), lambda **fields: ViTEncoder(ViTConfig(**fields)),
                  tiny=dict(image_size=8, patch_size=4, width=16, depth=3, num_heads=2,
                            mlp_dim=32))
