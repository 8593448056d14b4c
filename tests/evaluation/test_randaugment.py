"""RandAugment in JAX against PIL (what torchvision applies to PIL images) and
against torchvision's magnitude table, recomputed here with numpy.

Tolerance: the geometric ops, Posterize, Solarize, Equalize and Identity
must match PIL exactly (nearest sampling at pixel centres and integer LUTs
leave no rounding). The blend ops (Brightness, Color, Contrast, Sharpness)
and AutoContrast may differ by one grey level, and only at pixels whose
exact value (float64, from PIL's own degenerate image or histogram) is an
integer up to float error, where XLA's fused multiply-add (or PIL's float64
division) lands on the other side of the integer before truncation
(`randaugment._blend`). Anything else is a bug.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from lwfedssl_jax.data import randaugment as ra

BLENDS = {'Brightness': ImageEnhance.Brightness, 'Color': ImageEnhance.Color,
          'Contrast': ImageEnhance.Contrast, 'Sharpness': ImageEnhance.Sharpness}


def _images(shape):
    """Three test images: gradients + noise (many levels), 4 levels (a
    sparse histogram), and a constant image with one odd pixel."""
    h, w = shape
    rng = np.random.default_rng(h * 100 + w)
    y, x = np.mgrid[0:h, 0:w]
    smooth = np.clip(np.stack([x * 7, y * 6, (x + y) * 3], -1)
                     + rng.integers(0, 60, (h, w, 3)), 0, 255).astype(np.uint8)
    flat = np.full((h, w, 3), 77, np.uint8)
    flat[0, 0] = (10, 200, 30)
    return [smooth, (smooth // 64 * 64).astype(np.uint8), flat]


def _pil(op, image, mag):
    """The op as torchvision's `_apply_op` runs it on a PIL image (fill 0,
    nearest): shears about (0, 0) with matrix (1, tan(atan(m)), 0, ...)."""
    p = Image.fromarray(image)
    affine = lambda m: p.transform(p.size, Image.AFFINE, m, Image.NEAREST, fillcolor=(0, 0, 0))
    if op == 'Identity':
        return p
    if op == 'ShearX':
        return affine((1, mag, 0, 0, 1, 0))
    if op == 'ShearY':
        return affine((1, 0, 0, mag, 1, 0))
    if op == 'TranslateX':
        return affine((1, 0, -int(mag), 0, 1, 0))
    if op == 'TranslateY':
        return affine((1, 0, 0, 0, 1, -int(mag)))
    if op == 'Rotate':
        return p.rotate(mag, Image.NEAREST, fillcolor=(0, 0, 0))
    if op in BLENDS:
        return BLENDS[op](p).enhance(1 + mag)
    if op == 'Posterize':
        return ImageOps.posterize(p, int(mag))
    if op == 'Solarize':
        return ImageOps.solarize(p, mag)
    if op == 'AutoContrast':
        return ImageOps.autocontrast(p)
    return ImageOps.equalize(p)


def _allowed_off_by_one(op, image, mag):
    """`[H, W, 3]` bool: pixels where a one-level difference is explained."""
    x = image.astype(np.float64)
    if op in BLENDS:
        deg = np.asarray(BLENDS[op](Image.fromarray(image)).degenerate, np.float64)
        exact = deg + float(np.float32(1 + mag)) * (x - deg)
        return np.abs(exact - np.round(exact)) < 1e-4
    if op == 'AutoContrast':
        lo, hi = x.min(axis=(0, 1)), x.max(axis=(0, 1))
        return ((x - lo) * 255) % np.maximum(hi - lo, 1) == 0
    return np.zeros(image.shape, bool)


@pytest.mark.parametrize('shape', [(32, 32), (16, 24)])
@pytest.mark.parametrize('magnitude', [9, 30])
def test_each_op_matches_pil(shape, magnitude):
    apply = jax.jit(ra.apply_op)
    mags, signed = ra.op_magnitudes(magnitude, shape)
    checked = 0
    for index, op in enumerate(ra.OPS):
        for sign in ((1, -1) if signed[index] else (1,)):
            for image in _images(shape):
                mag = float(mags[index]) * sign
                expected = np.asarray(_pil(op, image, mag)).astype(int)
                got = np.asarray(apply(image, index, mag)).astype(int)
                diff = np.abs(got - expected)
                assert diff.max() <= 1, (op, sign, diff.max())
                unexplained = (diff > 0) & ~_allowed_off_by_one(op, image, mag)
                assert not unexplained.any(), (op, sign, np.argwhere(unexplained)[:5])
                checked += 1
    assert checked == 3 * (len(ra.OPS) + int(signed.sum()))


def test_ops_change_the_image():
    """No op is silently the identity at magnitude 9 (the other test would
    pass for an identity op only if PIL's were one too)."""
    image = _images((32, 32))[0]
    mags, _ = ra.op_magnitudes(9, (32, 32))
    for index, op in enumerate(ra.OPS[1:], start=1):
        out = np.asarray(ra.apply_op(jnp.asarray(image), index, float(mags[index])))
        assert not np.array_equal(out, image), op


def test_magnitudes_are_torchvisions_table():
    for bin_ in range(ra.NUM_BINS):
        mags, signed = ra.op_magnitudes(bin_, (24, 40))   # H = 24, W = 40
        table = dict(zip(ra.OPS, mags))
        lin = lambda hi: np.linspace(0.0, hi, 31)[bin_]
        np.testing.assert_allclose(
            [table[o] for o in ('ShearX', 'ShearY', 'TranslateX', 'TranslateY', 'Rotate',
                                'Brightness', 'Color', 'Contrast', 'Sharpness', 'Solarize')],
            [lin(0.3), lin(0.3), lin(150 / 331 * 40), lin(150 / 331 * 24), lin(30.0),
             lin(0.9), lin(0.9), lin(0.9), lin(0.9), np.linspace(255.0, 0.0, 31)[bin_]],
            rtol=1e-6, atol=1e-6)
        # torch.round rounds half to even, as numpy does.
        assert table['Posterize'] == 8 - np.round(np.arange(31) / 7.5)[bin_]
        assert [o for o, s in zip(ra.OPS, signed) if s] == [
            'ShearX', 'ShearY', 'TranslateX', 'TranslateY', 'Rotate', 'Brightness',
            'Color', 'Contrast', 'Sharpness']
    with pytest.raises(ValueError, match='magnitude'):
        ra.op_magnitudes(31, (8, 8))


def test_batch_equals_per_image_ops_drawn_as_documented():
    """A second path: each image's ops re-drawn from the documented keys and
    applied one by one."""
    images = np.stack(_images((16, 16)) * 4)   # [12, 16, 16, 3]
    key = jax.random.key(3)
    out = np.asarray(jax.jit(ra.randaugment, static_argnames=('num_ops', 'magnitude'))(
        key, jnp.asarray(images), num_ops=2, magnitude=9))
    mags, signed = ra.op_magnitudes(9, (16, 16))
    drawn = set()
    for i, image in enumerate(images):
        x = jnp.asarray(image)
        for j in range(2):
            k = jax.random.fold_in(jax.random.fold_in(key, i), j)
            op = int(jax.random.randint(k, (), 0, len(ra.OPS)))
            negative = signed[op] and bool(jax.random.bernoulli(jax.random.fold_in(k, 1)))
            x = ra.apply_op(x, op, -mags[op] if negative else mags[op])
            drawn.add(op)
        np.testing.assert_array_equal(out[i], np.asarray(x))
    assert len(drawn) >= 8   # 24 draws over 14 ops: the choice varies per image
    assert out.dtype == np.uint8 and out.shape == images.shape


def test_zero_ops_is_identity_and_bad_input_is_refused():
    images = jnp.asarray(np.stack(_images((8, 8))))
    np.testing.assert_array_equal(ra.randaugment(jax.random.key(0), images, num_ops=0),
                                  images)
    with pytest.raises(ValueError, match='uint8'):
        ra.randaugment(jax.random.key(0), images.astype(jnp.float32))
