"""Convolution as the ResNet uses it, working around two XLA:CPU slow paths.

`conv2d(x, w, stride)`: a bias-free k x k convolution of NHWC `x` with an
HWIO kernel, padded by (k - 1) // 2 on each side as PyTorch pads. On CPU its
weight gradient is computed as patches x output gradient (see below);
accelerators keep XLA's own convolutions.
"""

import functools

import jax
import jax.numpy as jnp

# Two XLA:CPU slow paths, measured on the development machine (2 cores;
# experiments/backbones/README.md), and their work-arounds. Same parameters
# and results (up to float rounding) either way.
# 1. A convolution on maps of side <= 2 (ResNet-18's layer4 on 16x16
#    inputs): a 3x3 512->512 conv at batch 64 took 750 ms, 29 ms on 4x4 maps
#    and 21 ms as patches x matmul. Such convolutions run as patches x matmul
#    on every backend (they are tiny).
# 2. The weight gradient of a convolution inside a loop (the local steps are
#    a `lax.scan`): 45x slower than outside one (4 backward-filter convs of
#    64 channels on 16x16 maps: 7.2 s against 0.16 s), while patches x
#    gradient ran in 0.18 s. On CPU the weight gradient is computed that way
#    (a transient of 9x the conv's input); accelerators keep XLA's own.
_PATCHES_MAX_SIDE = 2
_DIMS = ('NHWC', 'HWIO', 'NHWC')


def _patches(x: jax.Array, k: int, stride: int) -> jax.Array:
    """`[B, H, W, C]` -> `[B, H', W', C * k * k]`, ordered (C, kh, kw)."""
    pad = ((k - 1) // 2,) * 2
    return jax.lax.conv_general_dilated_patches(x, (k, k), (stride, stride), (pad, pad),
                                                dimension_numbers=_DIMS)


def _as_matrix(w: jax.Array) -> jax.Array:
    """HWIO kernel `[k, k, C_in, C_out]` -> `[C_in * k * k, C_out]` (patch order)."""
    return jnp.transpose(w, (2, 0, 1, 3)).reshape(-1, w.shape[-1])


def _xla_conv(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    pad = ((w.shape[0] - 1) // 2,) * 2
    if -(-x.shape[1] // stride) <= _PATCHES_MAX_SIDE:       # slow path 1
        return _patches(x, w.shape[0], stride) @ _as_matrix(w)
    return jax.lax.conv_general_dilated(x, w, (stride, stride), (pad, pad),
                                        dimension_numbers=_DIMS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_patches_wgrad(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    return _xla_conv(x, w, stride)


def _conv_fwd(x, w, stride):
    return _xla_conv(x, w, stride), (x, w)


def _conv_bwd(stride, residuals, g):
    x, w = residuals
    dx = jax.vjp(lambda x_: _xla_conv(x_, w, stride), x)[1](g)[0]
    k, c_in, c_out = w.shape[0], w.shape[2], w.shape[3]
    dw = jnp.einsum('bhwp,bhwo->po', _patches(x, k, stride), g)   # slow path 2
    return dx, jnp.transpose(dw.reshape(c_in, k, k, c_out), (1, 2, 0, 3))


_conv_patches_wgrad.defvjp(_conv_fwd, _conv_bwd)


def conv2d(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    """`[B, H, W, C_in]` * HWIO `w` -> `[B, H', W', C_out]`, padding (k - 1) // 2
    on each side (PyTorch's), working around XLA:CPU's slow paths (above)."""
    if jax.default_backend() == 'cpu':
        return _conv_patches_wgrad(x, w, stride)
    return _xla_conv(x, w, stride)
