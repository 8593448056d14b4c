"""RandAugment in pure JAX, after torchvision's `transforms.RandAugment`.

The paper fine-tunes with "torchvision RandAugment" (paper notes §6). This
is that transform, batched and on device: for every image of a
`[B, H, W, 3]` uint8 batch, `num_ops` times in a row, one of the 14 ops below
is drawn uniformly, applied at the fixed `magnitude` bin (of 31), with a
random sign for the signed ops. Each op is a `lax.switch` branch, so the
transform is jittable and vmappable, and keeps uint8 in and out.

The ops and their magnitude at bin m of `num_bins` (torchvision's table;
W, H = image width, height):

| op | magnitude | signed | what |
|---|---|---|---|
| Identity | - | no | unchanged |
| ShearX / ShearY | linspace(0, 0.3) | yes | shear about the top-left corner |
| TranslateX / Y | linspace(0, 150/331 W or H), truncated to int | yes | shift, black fill |
| Rotate | linspace(0, 30) degrees | yes | about the image centre, black fill |
| Brightness, Color, Contrast, Sharpness | linspace(0, 0.9), factor 1 + it | yes | PIL blends |
| Posterize | 8 - round(m / ((num_bins - 1) / 4)) bits | no | keep the top bits |
| Solarize | linspace(255, 0) threshold | no | invert pixels >= threshold |
| AutoContrast | - | no | stretch each channel to [0, 255] |
| Equalize | - | no | per-channel histogram equalisation |

Pixel arithmetic follows PIL, which torchvision calls for PIL images (the
usual CIFAR pipeline): nearest-neighbour sampling at pixel centres with
black fill (`Image.transform`, `Image.rotate`); blends truncated to uint8
(`Image.blend`); grey = ITU-R 601-2 luma rounded as PIL's 'L' conversion;
the contrast mean rounded to an int; the sharpness blur is PIL's SMOOTH
kernel with the border pixels kept; equalisation's step is
`(count - count of the last non-empty bin) // 255`. Two kinds of pixels may
differ from PIL by one level, both where an exact value is an integer that
floating point lands on either side of: blends (XLA fuses the multiply-add,
see `_blend`) and AutoContrast (exact integer division here, float64 in
PIL, where `(x - lo) * 255 / (hi - lo)` is an integer).

Example:
    >>> out = jax.jit(randaugment, static_argnames=('num_ops', 'magnitude'))(
    ...     key, images_u8, num_ops=2, magnitude=9)   # [B, H, W, 3] uint8
"""

import jax
import jax.numpy as jnp
import numpy as np

OPS = ('Identity', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY', 'Rotate',
       'Brightness', 'Color', 'Contrast', 'Sharpness', 'Posterize', 'Solarize',
       'AutoContrast', 'Equalize')
NUM_BINS = 31   # torchvision's default num_magnitude_bins

# ITU-R 601-2 luma in PIL's 16-bit fixed point (L = (R*19595 + G*38470 +
# B*7471 + 0x8000) >> 16), so grey levels match PIL's 'L' exactly.
_LUMA_FIXED = np.array([19595, 38470, 7471], np.int32)


def op_magnitudes(magnitude: int, image_size: tuple[int, int],
                  num_bins: int = NUM_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Each op's magnitude at bin `magnitude`, and whether it takes a sign.

    Args:
        magnitude: the bin, in `[0, num_bins)`.
        image_size: `(H, W)` of the images (translations scale with them).
        num_bins: number of magnitude bins (torchvision: 31).

    Returns:
        `([len(OPS)] float32 magnitudes, [len(OPS)] bool signed)`, in `OPS`
        order (ops without a magnitude get 0).

    Raises:
        ValueError: `magnitude` outside `[0, num_bins)`.
    """
    if not 0 <= magnitude < num_bins:
        raise ValueError(f'magnitude must be in [0, {num_bins}), got {magnitude}.')
    height, width = image_size
    frac = magnitude / (num_bins - 1)   # position on torchvision's linspaces
    table = {
        'ShearX': (0.3 * frac, True), 'ShearY': (0.3 * frac, True),
        'TranslateX': (150.0 / 331.0 * width * frac, True),
        'TranslateY': (150.0 / 331.0 * height * frac, True),
        'Rotate': (30.0 * frac, True),
        'Brightness': (0.9 * frac, True), 'Color': (0.9 * frac, True),
        'Contrast': (0.9 * frac, True), 'Sharpness': (0.9 * frac, True),
        # Python's round() is half-to-even, as torch.round.
        'Posterize': (8 - round(magnitude / ((num_bins - 1) / 4)), False),
        'Solarize': (255.0 * (1 - frac), False),
    }
    mags = np.array([table.get(op, (0.0, False))[0] for op in OPS], np.float32)
    signed = np.array([table.get(op, (0.0, False))[1] for op in OPS], bool)
    return mags, signed


# ------------------------------------------------------------------ geometry
def _warp(img: jax.Array, matrix) -> jax.Array:
    """PIL's nearest `Image.AFFINE`: output pixel (x, y) reads input pixel
    `floor(M @ (x + 0.5, y + 0.5, 1))`, black outside. `img`: [H, W, 3]."""
    h, w = img.shape[:2]
    a, b, c, d, e, f = matrix
    y, x = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) + 0.5,
                        jnp.arange(w, dtype=jnp.float32) + 0.5, indexing='ij')
    src_x = jnp.floor(a * x + b * y + c).astype(jnp.int32)
    src_y = jnp.floor(d * x + e * y + f).astype(jnp.int32)
    inside = (src_x >= 0) & (src_x < w) & (src_y >= 0) & (src_y < h)
    out = img[jnp.clip(src_y, 0, h - 1), jnp.clip(src_x, 0, w - 1)]
    return jnp.where(inside[..., None], out, jnp.zeros_like(out))


def _shear_x(img, mag):
    # torchvision: shear angle atan(mag) about (0, 0) -> inverse map x + mag y.
    return _warp(img, (1.0, mag, 0.0, 0.0, 1.0, 0.0))


def _shear_y(img, mag):
    return _warp(img, (1.0, 0.0, 0.0, mag, 1.0, 0.0))


def _translate_x(img, mag):
    # torchvision passes int(magnitude): truncation toward zero.
    return _warp(img, (1.0, 0.0, -jnp.trunc(mag), 0.0, 1.0, 0.0))


def _translate_y(img, mag):
    return _warp(img, (1.0, 0.0, 0.0, 0.0, 1.0, -jnp.trunc(mag)))


def _rotate(img, degrees):
    # PIL's Image.rotate: counter-clockwise about (W / 2, H / 2).
    h, w = img.shape[:2]
    cx, cy = w / 2.0, h / 2.0
    theta = jnp.deg2rad(degrees)
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    return _warp(img, (cos, -sin, cx - cos * cx + sin * cy,
                       sin, cos, cy - sin * cx - cos * cy))


# ------------------------------------------------------------------- colour
def _luma(img: jax.Array) -> jax.Array:
    """[H, W, 3] uint8 -> [H, W] int32 grey levels, as PIL's 'L'."""
    return (img.astype(jnp.int32) @ _LUMA_FIXED + 0x8000) >> 16


def _blend(degenerate: jax.Array, img: jax.Array, factor) -> jax.Array:
    """PIL's `Image.blend(degenerate, img, factor)`: float32, clipped, then
    truncated to uint8.

    Where the exact value `deg + factor * (img - deg)` is an integer up to
    float32 rounding (e.g. 72 + 0.85 * (12 - 72) = 21), the result may be one
    level below PIL's: XLA fuses the multiply-add into one FMA (one rounding,
    20.9999986), PIL rounds the product first (21.0). No barrier survives
    XLA's simplifier, and torchvision's own tensor backend blends with
    another formula, so backends disagree by one level at such points anyway.
    """
    deg = degenerate.astype(jnp.float32)
    out = deg + jnp.float32(factor) * (img.astype(jnp.float32) - deg)
    return jnp.floor(jnp.clip(out, 0.0, 255.0)).astype(jnp.uint8)


def _brightness(img, mag):
    return _blend(jnp.zeros_like(img), img, 1.0 + mag)


def _color(img, mag):
    return _blend(jnp.broadcast_to(_luma(img)[..., None], img.shape), img, 1.0 + mag)


def _contrast(img, mag):
    luma = _luma(img)
    # int(mean + 0.5) in exact integer arithmetic.
    mean = (2 * luma.sum() + luma.size) // (2 * luma.size)
    return _blend(jnp.full(img.shape, mean, jnp.int32), img, 1.0 + mag)


def _sharpness(img, mag):
    # PIL's SMOOTH: [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13, rounded, on the
    # interior; the one-pixel border keeps its values.
    x = img.astype(jnp.int32)
    h, w = img.shape[:2]
    total = 4 * x[1:-1, 1:-1] + sum(x[i:h - 2 + i, j:w - 2 + j]
                                    for i in range(3) for j in range(3))
    smooth = x.at[1:-1, 1:-1].set((2 * total + 13) // 26)   # round(total / 13)
    return _blend(smooth, img, 1.0 + mag)


def _posterize(img, bits):
    shift = 8 - bits.astype(jnp.int32)
    return ((img.astype(jnp.int32) >> shift) << shift).astype(jnp.uint8)


def _solarize(img, threshold):
    return jnp.where(img.astype(jnp.float32) >= threshold, 255 - img, img)


def _autocontrast(img, _):
    x = img.astype(jnp.int32)
    lo = x.min(axis=(0, 1))
    hi = x.max(axis=(0, 1))
    span = jnp.maximum(hi - lo, 1)
    stretched = jnp.clip((x - lo) * 255 // span, 0, 255)
    return jnp.where(hi > lo, stretched, x).astype(jnp.uint8)


def _equalize(img, _):
    def channel(c):   # [H, W] uint8 -> [H, W] uint8
        levels = c.astype(jnp.int32)
        hist = jnp.zeros(256, jnp.int32).at[levels.reshape(-1)].add(1)
        last = hist[levels.max()]              # count of the last non-empty bin
        step = (levels.size - last) // 255
        # lut[i] = (step // 2 + pixels below level i) // step
        below = jnp.cumsum(hist) - hist
        lut = jnp.clip((step // 2 + below) // jnp.maximum(step, 1), 0, 255)
        # One non-empty bin gives step 0: PIL leaves such a channel alone.
        return jnp.where(step > 0, lut[levels], levels).astype(jnp.uint8)

    return jax.vmap(channel, in_axes=-1, out_axes=-1)(img)


_BRANCHES = {
    'Identity': lambda img, _: img, 'ShearX': _shear_x, 'ShearY': _shear_y,
    'TranslateX': _translate_x, 'TranslateY': _translate_y, 'Rotate': _rotate,
    'Brightness': _brightness, 'Color': _color, 'Contrast': _contrast,
    'Sharpness': _sharpness, 'Posterize': _posterize, 'Solarize': _solarize,
    'AutoContrast': _autocontrast, 'Equalize': _equalize,
}


def apply_op(img: jax.Array, op: jax.Array, magnitude: jax.Array) -> jax.Array:
    """Applies op number `op` (index into `OPS`) at signed `magnitude`.

    Args:
        img: `[H, W, 3]` uint8 image.
        op: int scalar in `[0, len(OPS))` (may be traced).
        magnitude: float scalar, in the op's own units (`op_magnitudes`).

    Returns:
        `[H, W, 3]` uint8.
    """
    branches = [lambda x, m, f=_BRANCHES[name]: f(x, m).astype(jnp.uint8)
                for name in OPS]
    return jax.lax.switch(op, branches, img, jnp.asarray(magnitude, jnp.float32))


def randaugment(key: jax.Array, images: jax.Array, *, num_ops: int = 2,
                magnitude: int = 9, num_bins: int = NUM_BINS) -> jax.Array:
    """torchvision's `RandAugment(num_ops, magnitude, num_bins)` per image.

    Image i's op j is drawn uniformly with `k = fold_in(fold_in(key, i), j)`,
    and its sign (+ or - with probability 1/2, signed ops only) with
    `fold_in(k, 1)`.

    Args:
        key: PRNG key.
        images: `[B, H, W, 3]` uint8.
        num_ops: ops applied in sequence (static; 0 returns `images`).
        magnitude: magnitude bin in `[0, num_bins)` (static).
        num_bins: number of magnitude bins (static).

    Returns:
        `[B, H, W, 3]` uint8.
    """
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != jnp.uint8:
        raise ValueError(f'randaugment expects [B, H, W, 3] uint8 images, got '
                         f'{images.shape} {images.dtype}.')
    mags, signed = op_magnitudes(magnitude, images.shape[1:3], num_bins)
    mags, signed = jnp.asarray(mags), jnp.asarray(signed)

    def one(index, img):
        image_key = jax.random.fold_in(key, index)
        for j in range(num_ops):
            op_key = jax.random.fold_in(image_key, j)
            sign_key = jax.random.fold_in(op_key, 1)
            op = jax.random.randint(op_key, (), 0, len(OPS))
            flip = signed[op] & jax.random.bernoulli(sign_key)
            img = apply_op(img, op, jnp.where(flip, -mags[op], mags[op]))
        return img

    return jax.vmap(one)(jnp.arange(images.shape[0]), images)


__all__ = ['NUM_BINS', 'OPS', 'apply_op', 'op_magnitudes', 'randaugment']
