"""Tests for lwfedssl_jax.data.augment (expected values computed in numpy)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from lwfedssl_jax.data import augment
from lwfedssl_jax.data.augment import AugmentConfig, augment_view, to_float

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])

# Every augmentation off; single ops are switched on from here.
OFF = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=False,
                    rotation_deg=0.0, jitter_prob=0.0, grayscale_prob=0.0,
                    blur_prob=(0.0, 0.0), solarize_prob=(0.0, 0.0),
                    noise_std=0.0)

IMAGES = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3),
                                           dtype=np.uint8)
KEY = jax.random.key(0)


def _norm(x01):
    """[0, 1] float -> normalised, in numpy float64."""
    return (x01 - IMAGENET_MEAN) / IMAGENET_STD


def _unnorm(v):
    """Normalised view -> [0, 1] pixel scale."""
    return np.asarray(v, np.float64) * IMAGENET_STD + IMAGENET_MEAN


def _view(cfg, images=IMAGES, key=KEY, view=0):
    return np.asarray(augment_view(key, jnp.asarray(images), cfg, view))


def test_to_float_matches_numpy():
    got = np.asarray(to_float(jnp.asarray(IMAGES)))
    assert got.dtype == np.float32 and got.shape == IMAGES.shape
    np.testing.assert_allclose(got, _norm(IMAGES / 255.0), atol=1e-5)


def test_all_disabled_is_identity():
    np.testing.assert_allclose(_view(OFF), _norm(IMAGES / 255.0), atol=1e-5)
    np.testing.assert_allclose(_view(OFF, view=1), _norm(IMAGES / 255.0),
                               atol=1e-5)


def test_flip_only():
    cfg = OFF._replace(flip=True, flip_prob=1.0)
    np.testing.assert_allclose(_view(cfg), _norm(IMAGES[:, :, ::-1] / 255.0),
                               atol=1e-5)


def test_solarize_only():
    x = IMAGES / 255.0
    expected = np.where(x >= 0.5, 1.0 - x, x)
    cfg = OFF._replace(solarize_prob=(0.0, 1.0))
    np.testing.assert_allclose(_view(cfg, view=1), _norm(expected), atol=1e-5)
    # View 0 has probability 0: untouched (the MoCo v3 asymmetry).
    np.testing.assert_allclose(_view(cfg, view=0), _norm(x), atol=1e-5)


def test_grayscale_only():
    gray = (IMAGES / 255.0) @ np.array([0.299, 0.587, 0.114])
    cfg = OFF._replace(grayscale_prob=1.0)
    np.testing.assert_allclose(_view(cfg), _norm(gray[..., None]), atol=1e-5)


def test_blur_matches_scipy_and_is_view_asymmetric():
    # sigma fixed at 1 px of a 16 px image; kernel 3 taps (10% of 16 -> 3).
    cfg = OFF._replace(blur_prob=(1.0, 0.0), blur_sigma=(1.0, 1.0),
                       blur_ref_size=16)
    x = IMAGES / 255.0
    expected = scipy.ndimage.gaussian_filter(
        x, sigma=(0, 1.0, 1.0, 0), mode='mirror', radius=(0, 1, 1, 0))
    np.testing.assert_allclose(_view(cfg, view=0), _norm(expected), atol=1e-5)
    np.testing.assert_allclose(_view(cfg, view=1), _norm(x), atol=1e-5)


def test_crop_scale_on_a_ramp():
    # Pixel value 16 * column; a crop of a quarter of the area (half the side)
    # stretched back to 16 px has slope 8 per column and none across rows.
    ramp = np.broadcast_to((np.arange(16) * 16)[None, None, :, None],
                           (4, 16, 16, 3)).astype(np.uint8)
    cfg = OFF._replace(crop_scale=(0.25, 0.25))
    out = _unnorm(_view(cfg, images=ramp)) * 255
    # Columns 0 and 15 sample a quarter pixel outside the crop (clamped).
    np.testing.assert_allclose(np.diff(out[:, :, 1:15], axis=2), 8.0,
                               atol=1e-3)
    np.testing.assert_allclose(np.diff(out, axis=1), 0.0, atol=1e-3)


def test_rotation_is_about_the_centre():
    yy, xx = np.mgrid[0:16, 0:16] + 0.5 - 8
    blob = np.exp(-(xx ** 2 + yy ** 2) / 20.0)
    disk = np.broadcast_to((blob * 255)[None, :, :, None],
                           (4, 16, 16, 3)).astype(np.uint8)
    cfg = OFF._replace(rotation_deg=90.0)
    # A centred radial blob is rotation-invariant up to bilinear error inside
    # the inscribed circle (corners are filled with edge pixels) ...
    inside = (xx ** 2 + yy ** 2 < 7 ** 2)[None, :, :, None]
    err = np.abs(_unnorm(_view(cfg, images=disk)) - disk / 255.0)
    assert np.max(err * inside) < 0.03
    # ... while a generic image changes.
    assert np.abs(_view(cfg) - _norm(IMAGES / 255.0)).max() > 0.5


def test_brightness_only_scales_each_image():
    mid = (IMAGES // 2 + 64).astype(np.uint8)  # Values 64..191: no clipping.
    cfg = OFF._replace(jitter_prob=1.0, brightness=0.4, contrast=0.0,
                       saturation=0.0, hue=0.0)
    ratio = _unnorm(_view(cfg, images=mid)) / (mid / 255.0)
    per_image = ratio.reshape(4, -1)
    np.testing.assert_allclose(
        per_image, np.broadcast_to(per_image[:, :1], per_image.shape),
        atol=1e-4)
    assert np.all((per_image > 0.6 - 1e-4) & (per_image < 1.4 + 1e-4))
    assert np.ptp(per_image[:, 0]) > 1e-3  # Factors differ across images.


def _jitter_only(**factors):
    """(input, output) in [0, 1] of a jitter-only view of mid-grey images."""
    mid = (IMAGES // 4 + 96).astype(np.uint8)
    cfg = OFF._replace(jitter_prob=1.0, **{'brightness': 0.0, 'contrast': 0.0,
                                           'saturation': 0.0, 'hue': 0.0, **factors})
    return mid / 255.0, _unnorm(_view(cfg, images=mid))


def test_contrast_only_keeps_mean_luma():
    x, y = _jitter_only(contrast=0.4)
    luma = np.array([0.299, 0.587, 0.114])
    m = (x @ luma).mean(axis=(1, 2))[:, None, None, None]
    # y - m = f (x - m) with one factor f per image.
    f = (y - m).reshape(4, -1) / (x - m).reshape(4, -1)
    ok = np.abs((x - m).reshape(4, -1)) > 0.05
    for i in range(4):
        np.testing.assert_allclose(f[i][ok[i]], f[i][ok[i]][0], atol=1e-3)
        assert 0.6 - 1e-4 < f[i][ok[i]][0] < 1.4 + 1e-4


def test_saturation_and_hue_keep_luma():
    x, y = _jitter_only(saturation=0.4, hue=0.1)
    luma = np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(y @ luma, x @ luma, atol=1e-4)
    assert np.abs(y - x).max() > 0.01


def test_noise_statistics():
    gray = np.full((4, 16, 16, 3), 128, np.uint8)
    cfg = OFF._replace(noise_std=0.05)
    diff = _unnorm(_view(cfg, images=gray)) - 128 / 255.0
    assert abs(diff.mean()) < 0.005
    assert abs(diff.std() - 0.05) < 0.005


def test_default_config_determinism_and_key_sensitivity():
    cfg = AugmentConfig()
    a = _view(cfg, key=jax.random.key(1))
    b = _view(cfg, key=jax.random.key(1))
    c = _view(cfg, key=jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.1
    assert np.all(np.isfinite(a))
    # Values stay inside the normalised image of [0, 1].
    assert np.all(_unnorm(a) > -1e-5) and np.all(_unnorm(a) < 1 + 1e-5)


def test_two_views_jit_static_cfg():
    cfg = AugmentConfig(rotation_deg=10.0, noise_std=0.01)
    hash(cfg)  # Must be hashable to be a static argument.
    fn = jax.jit(augment.two_views, static_argnames='cfg')
    v0, v1 = fn(KEY, jnp.asarray(IMAGES), cfg)
    assert v0.shape == v1.shape == IMAGES.shape
    assert v0.dtype == v1.dtype == jnp.float32
    assert np.abs(np.asarray(v0) - np.asarray(v1)).max() > 0.1
    # View v is augment_view with fold_in(key, v), eager or jitted.
    np.testing.assert_allclose(
        v1, _view(cfg, key=jax.random.fold_in(KEY, 1), view=1), atol=1e-5)


def test_vmap_over_clients():
    cfg = OFF._replace(flip=True, flip_prob=0.5, grayscale_prob=0.5)
    keys = jax.random.split(KEY, 2)
    stacked = jnp.stack([IMAGES, IMAGES[::-1]])  # [C=2, B, H, W, 3]
    out = jax.vmap(lambda k, x: augment_view(k, x, cfg, 0))(keys, stacked)
    assert out.shape == (2,) + IMAGES.shape
    np.testing.assert_allclose(out[1], _view(cfg, IMAGES[::-1], keys[1]),
                               atol=1e-5)


def test_digits_config_runs_in_range():
    out = _unnorm(_view(augment.DIGITS, view=1))
    assert out.shape == IMAGES.shape and np.all(np.isfinite(out))
    assert np.all(out > -1e-5) and np.all(out < 1 + 1e-5)


@pytest.mark.parametrize('kwargs, match', [
    (dict(view=2), 'view must be 0 or 1'),
    (dict(images=IMAGES.astype(np.float32)), 'uint8'),
    (dict(images=IMAGES[..., :1]), r'\[B, H, W, 3\]'),
    (dict(cfg=OFF._replace(grayscale_prob=1.5)), 'grayscale_prob'),
    (dict(cfg=OFF._replace(crop_scale=(0.0, 1.0))), 'crop_scale'),
    (dict(cfg=OFF._replace(blur_sigma=(2.0, 1.0))), 'blur_sigma'),
    (dict(cfg=OFF._replace(hue=-0.1)), r'augment.hue=-0.1: must be >= 0'),
])
def test_errors(kwargs, match):
    args = dict(key=KEY, images=IMAGES, cfg=OFF, view=0) | kwargs
    with pytest.raises(ValueError, match=match):
        augment_view(args['key'], jnp.asarray(args['images']), args['cfg'],
                     args['view'])
    if 'images' in kwargs and kwargs['images'].dtype != np.uint8:
        with pytest.raises(ValueError, match='uint8'):
            to_float(jnp.asarray(kwargs['images']))
