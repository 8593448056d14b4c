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
from lwfedssl_jax.models.attention import attention

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
    Defines the parameter layout and is used for `init` only; the forward
    pass is `embed_forward`.
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
    """Pre-LN transformer block: x + MHSA(LN(x)); x + MLP(LN(x)). `[B,T,D]`.

    Defines the parameter layout (flax's `MultiHeadDotProductAttention`:
    `attn/{query,key,value}/kernel [D, H, D/H]`, `attn/out/kernel [H, D/H, D]`)
    and is used for `init` only; the forward pass is `block_forward`, the
    same function written for speed and mixed precision.
    """
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


# ---------------------------------------------------------------- forward
# The forward pass as plain functions of the parameter dicts `Embed` and
# `Block` create, written for XLA:CPU: one fused q/k/v matmul, attention
# with the heads next to the batch (`attention.py`), the patch projection as
# a matmul, the exact GELU through `erf` (XLA:CPU's `erfc`, which
# `jax.nn.gelu` uses, cost 3x more; kept for the backward by its input only)
# and a hand-written LayerNorm backward. The ViT-Tiny e2e client step
# was about 7% faster than with the flax modules (experiments/benchmarks/
# README.md); same numbers up to float round-off. Dtype: matmuls run in the
# dtype of the inputs and parameters (float32, or bfloat16 when the client
# step casts them, `optim.compute_dtype`);
# LayerNorm statistics and the softmax always run in float32.

def _ln_stats(x: jax.Array, eps: float) -> tuple[jax.Array, jax.Array]:
    """flax's LayerNorm statistics of `[..., D]`: mean and 1/sqrt(var + eps),
    var = E[x^2] - E[x]^2 (clipped at 0)."""
    mean = jnp.mean(x, -1, keepdims=True)
    var = jnp.maximum(jnp.mean(x * x, -1, keepdims=True) - mean * mean, 0.0)
    return mean, jax.lax.rsqrt(var + eps)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _layer_norm_f32(x, scale, bias, eps):
    mean, rstd = _ln_stats(x, eps)
    return (x - mean) * rstd * scale + bias


def _layer_norm_fwd(x, scale, bias, eps):
    mean, rstd = _ln_stats(x, eps)
    x_hat = (x - mean) * rstd
    return x_hat * scale + bias, (x_hat, rstd, scale)


def _layer_norm_bwd(eps, residuals, g):
    # The textbook LayerNorm gradient, written out: XLA:CPU's own
    # differentiation of the statistics ran the LayerNorm backward 3x
    # slower (4 LayerNorms of [64, 65, 192]: 30 ms against 11 ms).
    del eps
    x_hat, rstd, scale = residuals
    gx = g * scale
    dx = rstd * (gx - jnp.mean(gx, -1, keepdims=True)
                 - x_hat * jnp.mean(gx * x_hat, -1, keepdims=True))
    rows = tuple(range(g.ndim - 1))
    return dx, jnp.sum(g * x_hat, rows), jnp.sum(g, rows)


_layer_norm_f32.defvjp(_layer_norm_fwd, _layer_norm_bwd)


def layer_norm(p: dict, x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """LayerNorm over the last axis with flax's parameters (`scale`, `bias`)
    and statistics, computed in float32 whatever `x`'s dtype; `[..., D]` ->
    `[..., D]` in `x`'s dtype."""
    y = _layer_norm_f32(x.astype(jnp.float32), p['scale'].astype(jnp.float32),
                        p['bias'].astype(jnp.float32), eps)
    return y.astype(x.dtype)


def gelu(x: jax.Array) -> jax.Array:
    """Exact GELU, x Phi(x) = x (1 + erf(x / sqrt 2)) / 2 (`jax.nn.gelu` with
    `approximate=False` up to round-off, which goes through the slower `erfc`)."""
    return 0.5 * x * (1.0 + jax.lax.erf(x * np.asarray(np.sqrt(0.5), x.dtype)))


# Differentiated, the GELU keeps only its input for the backward pass and
# recomputes erf there: without this, XLA stores erf(x / sqrt 2) too, one more
# [B T, 4D] activation per trained block (12 MiB per view at ViT-Tiny batch
# 64, issue 12) for one erf per element in the backward (no measurable step
# time on CPU). Forward-only (the frozen prefix) it is plain `gelu`.
_gelu_keeping_input = jax.checkpoint(gelu)


def embed_forward(p: dict, images: jax.Array, cfg: ViTConfig) -> jax.Array:
    """`Embed`'s forward: `[B, H, W, 3]` float -> tokens `[B, T, D]`.

    The stride-p, p x p patch convolution is a matmul of the flattened
    patches (ordered row, column, channel like the HWIO kernel) with the
    kernel reshaped to `[p p 3, D]`.
    """
    b, size, c = images.shape[0], cfg.image_size, cfg.width
    g, ps = size // cfg.patch_size, cfg.patch_size
    kernel = p['patch']['kernel']
    x = images.astype(kernel.dtype).reshape(b, g, ps, g, ps, 3)
    x = x.transpose(0, 1, 3, 2, 4, 5).reshape(b, g * g, ps * ps * 3)
    x = x @ kernel.reshape(ps * ps * 3, c) + p['patch']['bias']        # [B, P, D]
    cls = jnp.broadcast_to(p['cls'].astype(x.dtype), (b, 1, c))
    x = jnp.concatenate([cls, x], 1)
    if cfg.pos_embed == 'learned':
        pos = p['pos'].astype(x.dtype)
    else:   # a constant: neither trained nor exchanged
        pos = jnp.asarray(sincos_position_embedding(g, c), x.dtype)
    return x + pos                                                      # [B, T, D]


def block_forward(p: dict, x: jax.Array) -> jax.Array:
    """`Block`'s forward: tokens `[B, T, D]` -> `[B, T, D]`.

    q, k and v come from one `[D, 3D]` matmul (the three kernels side by
    side); attention is `models/attention.py`'s (`jax.nn.dot_product_attention`'s
    numbers: scale 1/sqrt(D/H), logits and softmax in float32).
    """
    b, t, d = x.shape
    a = p['attn']
    heads, head_dim = a['query']['bias'].shape
    y = layer_norm(p['ln_1'], x).reshape(b * t, d)
    names = ('query', 'key', 'value')
    w = jnp.concatenate([a[n]['kernel'].reshape(d, d) for n in names], 1)     # [D, 3D]
    bias = jnp.concatenate([a[n]['bias'].reshape(d) for n in names])
    qkv = (y @ w + bias).reshape(b, t, 3, heads, head_dim)
    o = attention(qkv).reshape(b * t, d) @ a['out']['kernel'].reshape(d, d) + a['out']['bias']
    x = x + o.reshape(b, t, d)
    y = layer_norm(p['ln_2'], x).reshape(b * t, d)
    y = _gelu_keeping_input(y @ p['fc_1']['kernel'] + p['fc_1']['bias'])
    y = y @ p['fc_2']['kernel'] + p['fc_2']['bias']
    return x + y.reshape(b, t, d)


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
                    stop: int, keep: jax.Array | None = None,
                    remat: str = 'none') -> jax.Array:
        """Runs blocks `[start, stop)`; `start == 0` means `x` is images.

        Args:
          params: dict holding (at least) the parts this segment uses; its
            floating dtype (float32, or bfloat16 cast by the client step) is
            the dtype of the matmuls.
          x: `[B, H, W, 3]` float images if `start == 0`, else tokens
            `[B, T, D]` output by block `start - 1`.
          start, stop: static block indices, `0 <= start <= stop <= depth`.
          keep: optional `[stop - start]` bool: a block whose entry is False
            is skipped (identity; depth dropout). Each block is a
            `lax.cond`, so a skipped block is not computed when the
            predicate is a scalar at run time (not under `vmap`, which turns
            `cond` into `select` and computes both branches). A tuple of
            Python bools skips blocks at trace time (for cost measurement).
          remat: rematerialisation of each block under differentiation
            (`backbone.REMAT_POLICIES`; 'none' stores every activation).

        Returns:
          Tokens `[B, T, D]` after block `stop - 1` (or `x` unchanged if the
          segment is empty and `start > 0`).
        """
        if start == 0 and (stop > 0 or EMBED in params):
            x = embed_forward(params[EMBED], x, self.cfg)
        run = backbone.remat_block(block_forward, remat)
        if remat != 'none' and keep is None and stop - start > 1:
            # A scan over the stacked blocks: XLA:CPU keeps the unrolled
            # blocks' recomputations alive together (remat then saved no
            # compiled memory at all), while a scan's loop order frees each
            # block's before the next (tests/models/test_remat.py).
            stacked = jax.tree.map(lambda *a: jnp.stack(a),
                                   *(params[block_name(i)] for i in range(start, stop)))
            return jax.lax.scan(lambda h, p: (run(p, h), None), x, stacked)[0]
        for i in range(start, stop):
            block = functools.partial(run, params[block_name(i)])
            if keep is None or (isinstance(keep, tuple) and keep[i - start]):
                x = block(x)
            elif not isinstance(keep, tuple):
                x = jax.lax.cond(keep[i - start], block, lambda t: t, x)
        return x

    def pool(self, params: dict, tokens: jax.Array) -> jax.Array:
        """`[B, T, D]` tokens -> `[B, D]` LayerNorm'd class token."""
        return layer_norm(params[NORM], tokens[:, 0])


backbone.register('vit', ViTConfig()._asdict(), lambda **fields: ViTEncoder(ViTConfig(**fields)),
                  tiny=dict(image_size=8, patch_size=4, width=16, depth=3, num_heads=2,
                            mlp_dim=32))
