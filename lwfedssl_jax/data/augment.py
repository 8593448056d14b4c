"""Two-view SSL augmentations in pure JAX (paper notes §4.3: MoCo v3 recipe).

Everything runs on device inside ``jit``: ``augment_view`` is a pure function
of ``(key, images)`` with a static, hashable ``AugmentConfig``. Per image, in
this order (MoCo v3 / BYOL):

1. random resized crop + horizontal flip + rotation, fused into ONE affine map
   sampled bilinearly (so an image is resampled once, not three times);
2. colour jitter (brightness, contrast, saturation, hue) with ``jitter_prob``,
   the four ops in a random order per image, as torchvision's ``ColorJitter``
   (composed into one per-image affine colour map, see ``_colour_jitter``);
3. random grayscale; 4. gaussian blur; 5. solarisation (both with per-view
   probabilities: the MoCo v3 asymmetry); 6. optional gaussian noise;
7. clip to [0, 1] and normalise with ``MEAN`` / ``STD``.

Flip is folded into the affine map although MoCo v3 flips last: flip commutes
with every later (pixel-wise or symmetric-kernel) op, so the output
distribution is the same.

Example:
    >>> views_fn = jax.jit(two_views, static_argnames='cfg')
    >>> v1, v2 = views_fn(key, images_u8, AugmentConfig())  # [B, H, W, 3] f32
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lwfedssl_jax.errors import ConfigError


# ImageNet statistics, as in MoCo v3: fixed and dataset-independent, so every
# source is normalised alike and `to_float` needs no per-dataset state.
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)

# ITU-R 601-2 luma weights (PIL 'L' and torchvision rgb_to_grayscale).
LUMA = np.array([0.299, 0.587, 0.114], np.float32)

# RGB -> YIQ; hue jitter is a rotation of the (I, Q) chroma plane, a cheap,
# differentiable stand-in for torchvision's HSV hue shift.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                        [0.595716, -0.274453, -0.321263],
                        [0.211456, -0.522591, 0.311135]], np.float64)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


class AugmentConfig(NamedTuple):
    """Static augmentation settings; defaults are MoCo v3 adapted to 32x32.

    Probabilities that are 0.0 remove the op from the traced graph. Tuples
    ``(view0, view1)`` give per-view values. All fields are Python scalars or
    tuples, so the config is hashable and can be a ``jit`` static argument.

    Attributes:
        crop_scale: crop area as a fraction of the image, sampled uniformly.
            MoCo v3 uses (0.08, 1) at 224 px; (0.2, 1) keeps more of a 32 px
            image (paper notes §4.3).
        crop_ratio: crop aspect-ratio range, sampled log-uniformly.
        flip: enables horizontal flips (False overrides ``flip_prob``).
        flip_prob: probability of a horizontal flip.
        rotation_deg: max absolute rotation, uniform in [-deg, deg]. Corners
            revealed by rotation repeat the edge pixels (``mode='nearest'``).
        jitter_prob: probability of applying colour jitter.
        brightness, contrast, saturation: jitter strengths s; the factor is
            uniform in [max(0, 1 - s), 1 + s].
        hue: hue shift, uniform in [-hue, hue] turns (0.5 = half a turn).
        grayscale_prob: probability of converting to luma (3 equal channels).
        blur_prob: per-view gaussian blur probability.
        blur_sigma: per-image sigma range in pixels of a ``blur_ref_size``
            image; it is scaled by ``H / blur_ref_size``. With the default 224
            the blur has the same *relative* strength as MoCo v3 at ImageNet
            size, which is nearly a no-op at 32 px (CIFAR SSL recipes such as
            solo-learn's commonly disable blur). Set ``blur_ref_size=H`` to give
            sigma in the image's own pixels.
        blur_ref_size: reference image size for ``blur_sigma``.
        solarize_prob: per-view solarisation probability (x -> 1 - x for
            x >= 0.5 on the [0, 1] scale).
        noise_std: std of additive gaussian noise in [0, 1] pixel units.
    """

    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    flip_prob: float = 0.5
    rotation_deg: float = 0.0
    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_prob: float = 0.2
    blur_prob: tuple[float, float] = (1.0, 0.1)
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_ref_size: int = 224
    solarize_prob: tuple[float, float] = (0.0, 0.2)
    noise_std: float = 0.0


# Adapted from the digits recipe measured in environment-notes §9: no flip
# (digits are not flip-invariant), rotation and noise instead of blur,
# solarisation and colour changes that grayscale digits do not have.
DIGITS = AugmentConfig(crop_scale=(0.5, 1.0), flip=False, rotation_deg=15.0,
                       saturation=0.0, hue=0.0, grayscale_prob=0.0,
                       blur_prob=(0.0, 0.0), solarize_prob=(0.0, 0.0),
                       noise_std=0.05)


def to_float(images: jax.Array) -> jax.Array:
    """Converts uint8 images to normalised float32 (used for eval too).

    Args:
        images: [..., H, W, 3] uint8.

    Returns:
        [..., H, W, 3] float32, ``(images / 255 - MEAN) / STD``.
    """
    images = jnp.asarray(images)
    if images.dtype != jnp.uint8:
        raise ValueError(f'to_float expects uint8 images, got {images.dtype}; '
                         'keep images as uint8 until augmentation.')
    return _normalise(images.astype(jnp.float32) / 255.0)


def _normalise(x: jax.Array) -> jax.Array:
    return (x - MEAN) / STD


def validate_config(cfg: AugmentConfig) -> AugmentConfig:
    """Raises `ConfigError` (key `augment.<field>`) for impossible settings."""
    def refuse(name, problem):
        raise ConfigError(f'augment.{name}', getattr(cfg, name), problem)

    for name, upper in (('crop_scale', 1.0), ('crop_ratio', math.inf),
                        ('blur_sigma', math.inf)):
        lo, hi = getattr(cfg, name)
        if not 0 < lo <= hi <= upper:
            refuse(name, 'must be a pair (lo, hi) with 0 < lo <= hi'
                   + (' <= 1.' if upper == 1.0 else '.'))
    for name in ('flip_prob', 'jitter_prob', 'grayscale_prob', 'blur_prob',
                 'solarize_prob'):
        probs = getattr(cfg, name)
        if not all(0 <= p <= 1 for p in np.atleast_1d(probs)):
            refuse(name, 'probabilities must be in [0, 1].')
    for name in ('rotation_deg', 'brightness', 'contrast', 'saturation', 'hue',
                 'noise_std'):
        if getattr(cfg, name) < 0:
            refuse(name, 'must be >= 0.')
    if cfg.blur_ref_size < 1:
        refuse('blur_ref_size', 'must be >= 1 (pixels).')
    return cfg


def _check(cfg: AugmentConfig, images: jax.Array, view: int) -> None:
    """Trace-time validation (plain Python; costs nothing at run time)."""
    if view not in (0, 1):
        raise ValueError(f'view must be 0 or 1, got {view!r}.')
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != jnp.uint8:
        raise ValueError('augment_view expects [B, H, W, 3] uint8 images, got '
                         f'shape {images.shape} dtype {images.dtype}.')
    validate_config(cfg)
    if cfg.blur_prob[view] > 0 and min(images.shape[1:3]) < 2:
        raise ConfigError('augment.blur_prob', cfg.blur_prob,
                          f'gaussian blur needs images of at least 2x2 pixels; got '
                          f'{images.shape[1:3]}.', 'set augment.blur_prob to (0, 0).')


def _geometry(key: jax.Array, x: jax.Array, cfg: AugmentConfig) -> jax.Array:
    """Random resized crop + flip + rotation as one bilinear affine resample.

    For output pixel (i, j) the offset from the image centre, in pixels, is
    rotated, flipped and scaled by the crop size, then added to the crop
    centre: ``src = centre + S_crop @ F @ R @ (p - c)``. With crop scale and
    ratio 1, no flip and no rotation this maps pixel j exactly to j.
    """
    b, h, w, _ = x.shape
    k_area, k_ratio, k_cx, k_cy, k_flip, k_rot = jax.random.split(key, 6)
    area = jax.random.uniform(k_area, (b,), minval=cfg.crop_scale[0],
                              maxval=cfg.crop_scale[1])
    log_ratio = jax.random.uniform(k_ratio, (b,),
                                   minval=math.log(cfg.crop_ratio[0]),
                                   maxval=math.log(cfg.crop_ratio[1]))
    ratio = jnp.exp(log_ratio)
    # Crop size as a fraction of the side; clipping (instead of torchvision's
    # rejection loop) keeps shapes static.
    cw = jnp.minimum(jnp.sqrt(area * ratio), 1.0)
    ch = jnp.minimum(jnp.sqrt(area / ratio), 1.0)
    cx = cw / 2 + jax.random.uniform(k_cx, (b,)) * (1 - cw)
    cy = ch / 2 + jax.random.uniform(k_cy, (b,)) * (1 - ch)
    flip = jnp.ones((b,))
    if cfg.flip and cfg.flip_prob > 0:
        flipped = jax.random.bernoulli(k_flip, cfg.flip_prob, (b,))
        flip = jnp.where(flipped, -1.0, 1.0)
    theta = jnp.zeros((b,))
    if cfg.rotation_deg > 0:
        theta = jnp.deg2rad(jax.random.uniform(
            k_rot, (b,), minval=-cfg.rotation_deg, maxval=cfg.rotation_deg))

    dv, du = jnp.meshgrid(jnp.arange(h) + 0.5 - h / 2,
                          jnp.arange(w) + 0.5 - w / 2, indexing='ij')  # [H, W]

    def e(a):  # [B] -> [B, 1, 1]
        return a[:, None, None]

    cos, sin = e(jnp.cos(theta)), e(jnp.sin(theta))
    ru = (cos * du - sin * dv) * e(flip)
    rv = sin * du + cos * dv
    cols = e(cx) * w + ru * e(cw) - 0.5  # [B, H, W]
    rows = e(cy) * h + rv * e(ch) - 0.5

    def sample(img, r, c):  # [H, W, 3], [H, W], [H, W] -> [H, W, 3]
        def one(channel):  # [H, W] -> [H, W]
            return jax.scipy.ndimage.map_coordinates(
                channel, [r, c], order=1, mode='nearest')
        return jax.vmap(one, in_axes=-1, out_axes=-1)(img)

    return jax.vmap(sample)(x, rows, cols)


def _gray(x: jax.Array) -> jax.Array:
    """[..., 3] -> [..., 1] luma."""
    return jnp.sum(x * LUMA, axis=-1, keepdims=True)


def _colour_jitter(key: jax.Array, x: jax.Array,
                   cfg: AugmentConfig) -> jax.Array:
    """Brightness / contrast / saturation / hue in a random order per image.

    Each op is affine in colour space (contrast's offset is the image's mean
    luma, itself linear in the pixels), so any order of them composes into
    one per-image map ``y = M @ x + c`` with M [3, 3] and c [3]. We compose
    on [B, 3, 3] matrices and touch the pixels once; torchvision instead
    clips after every op, which differs only where an intermediate value
    leaves [0, 1].
    """
    b = x.shape[0]
    keys = jax.random.split(key, 6)

    def factor(k, s):
        return jax.random.uniform(k, (b,), minval=max(0.0, 1 - s),
                                  maxval=1 + s)[:, None, None]  # [B, 1, 1]

    mu = jnp.mean(x, axis=(1, 2))[:, :, None]  # [B, 3, 1] mean colour
    luma = jnp.asarray(LUMA)[None, None, :]  # [1, 1, 3]
    eye = jnp.eye(3)[None]
    # Each op maps (M, c) -> (A @ M, A @ c + d), A [B, 3, 3], d [B, 3, 1].
    ops = []
    if cfg.brightness > 0:
        f_b = factor(keys[0], cfg.brightness)
        ops.append(lambda m, c: (f_b * m, f_b * c))
    if cfg.contrast > 0:
        f_c = factor(keys[1], cfg.contrast)

        def contrast(m, c):  # y -> f y + (1 - f) mean_luma(y)
            mean_luma = luma @ (m @ mu + c)  # [B, 1, 1]
            return f_c * m, f_c * c + (1 - f_c) * mean_luma

        ops.append(contrast)
    if cfg.saturation > 0:
        f_s = factor(keys[2], cfg.saturation)
        sat = f_s * eye + (1 - f_s) * jnp.ones((3, 1)) @ luma  # [B, 3, 3]
        ops.append(lambda m, c: (sat @ m, sat @ c))
    if cfg.hue > 0:
        angle = 2 * jnp.pi * jax.random.uniform(
            keys[3], (b,), minval=-cfg.hue, maxval=cfg.hue)
        cos, sin = jnp.cos(angle), jnp.sin(angle)
        one, zero = jnp.ones((b,)), jnp.zeros((b,))
        rot = jnp.stack([jnp.stack([one, zero, zero], -1),
                         jnp.stack([zero, cos, -sin], -1),
                         jnp.stack([zero, sin, cos], -1)], -2)  # [B, 3, 3]
        hue = (jnp.asarray(_YIQ_TO_RGB, jnp.float32) @ rot
               @ jnp.asarray(_RGB_TO_YIQ, jnp.float32))
        ops.append(lambda m, c: (hue @ m, hue @ c))
    if not ops:
        return x
    # Slot t applies op order[:, t]; every candidate is computed on the tiny
    # (M, c) and the chosen one gathered, which keeps the graph static.
    order = jnp.argsort(jax.random.uniform(keys[4], (b, len(ops))), axis=1)
    m, c = jnp.broadcast_to(eye, (b, 3, 3)), jnp.zeros((b, 3, 1))
    rows = jnp.arange(b)
    for t in range(len(ops)):
        cands = [op(m, c) for op in ops]
        m = jnp.stack([cm for cm, _ in cands])[order[:, t], rows]
        c = jnp.stack([cc for _, cc in cands])[order[:, t], rows]
    y = jnp.einsum('bdc,bhwc->bhwd', m, x) + c[:, None, None, :, 0]
    apply = jax.random.bernoulli(keys[5], cfg.jitter_prob, (b,))
    return jnp.where(apply[:, None, None, None], jnp.clip(y, 0.0, 1.0), x)


def _blur_kernel_size(h: int) -> int:
    """Odd kernel size of about 10% of the image (23 at 224, as BYOL)."""
    return max(3, int(0.1 * h) | 1)


def _gaussian_blur(key: jax.Array, x: jax.Array, cfg: AugmentConfig,
                   p: float) -> jax.Array:
    """Separable gaussian blur, per-image sigma, reflect padding."""
    b, h, w, _ = x.shape
    k_sigma, k_apply = jax.random.split(key)
    scale = h / cfg.blur_ref_size
    sigma = scale * jax.random.uniform(k_sigma, (b,), minval=cfg.blur_sigma[0],
                                       maxval=cfg.blur_sigma[1])
    r = _blur_kernel_size(min(h, w)) // 2
    t = jnp.arange(-r, r + 1, dtype=jnp.float32)
    kern = jnp.exp(-0.5 * (t[None, :] / sigma[:, None]) ** 2)
    kern = kern / jnp.sum(kern, axis=1, keepdims=True)  # [B, 2r + 1]
    # 'reflect' (d c b | a b c d) is torchvision's GaussianBlur padding.
    xp = jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode='reflect')
    # Unrolled taps: the kernel is tiny (3 px at 32, 23 at 224) and per image.
    y = sum(kern[:, i, None, None, None] * xp[:, :, i:i + w, :]
            for i in range(2 * r + 1))
    y = sum(kern[:, i, None, None, None] * y[:, i:i + h, :, :]
            for i in range(2 * r + 1))
    apply = jax.random.bernoulli(k_apply, p, (b,))
    return jnp.where(apply[:, None, None, None], y, x)


def augment_view(key: jax.Array, images_u8: jax.Array, cfg: AugmentConfig,
                 view: int) -> jax.Array:
    """One augmented view of a batch.

    Args:
        key: PRNG key; the output is a pure function of (key, images).
        images_u8: [B, H, W, 3] uint8.
        cfg: static ``AugmentConfig``.
        view: 0 or 1; selects the per-view ``blur_prob`` / ``solarize_prob``.

    Returns:
        [B, H, W, 3] float32, normalised with ``MEAN`` / ``STD``.

    Raises:
        ValueError: for a bad view, image shape/dtype or config range.
    """
    images_u8 = jnp.asarray(images_u8)
    _check(cfg, images_u8, view)
    b = images_u8.shape[0]
    # A fixed split, so enabling one op never changes another op's draws.
    k_geo, k_jit, k_gray, k_blur, k_sol, k_noise = jax.random.split(key, 6)
    x = images_u8.astype(jnp.float32) / 255.0  # [B, H, W, 3] in [0, 1]
    x = _geometry(k_geo, x, cfg)
    if cfg.jitter_prob > 0:
        x = _colour_jitter(k_jit, x, cfg)
    if cfg.grayscale_prob > 0:
        gray = jnp.broadcast_to(_gray(x), x.shape)
        apply = jax.random.bernoulli(k_gray, cfg.grayscale_prob, (b,))
        x = jnp.where(apply[:, None, None, None], gray, x)
    if cfg.blur_prob[view] > 0:
        x = _gaussian_blur(k_blur, x, cfg, cfg.blur_prob[view])
    if cfg.solarize_prob[view] > 0:
        apply = jax.random.bernoulli(k_sol, cfg.solarize_prob[view], (b,))
        x = jnp.where(apply[:, None, None, None] & (x >= 0.5), 1.0 - x, x)
    if cfg.noise_std > 0:
        x = x + cfg.noise_std * jax.random.normal(k_noise, x.shape)
    return _normalise(jnp.clip(x, 0.0, 1.0))


def two_views(key: jax.Array, images_u8: jax.Array,
              cfg: AugmentConfig) -> tuple[jax.Array, jax.Array]:
    """Both SSL views from one key.

    Args:
        key: PRNG key; view v uses ``fold_in(key, v)``.
        images_u8: [B, H, W, 3] uint8.
        cfg: static ``AugmentConfig``.

    Returns:
        Two [B, H, W, 3] float32 normalised arrays (view 0, view 1).
    """
    return (augment_view(jax.random.fold_in(key, 0), images_u8, cfg, 0),
            augment_view(jax.random.fold_in(key, 1), images_u8, cfg, 1))
