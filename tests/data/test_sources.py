"""Tests for lwfedssl_jax.data.sources."""

import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lwfedssl_jax.data import folder_source
from lwfedssl_jax.data.sources import ImageDataset, load_dataset
from lwfedssl_jax.errors import ConfigError

CIFAR_ARCHIVE = (Path(__file__).resolve().parents[2] / '..' / 'shared' / 'data'
                 / 'cifar10-jpeg.tar.gz')


def _check_dataset(ds, size, num_classes):
    assert isinstance(ds, ImageDataset)
    for images, labels in ((ds.train_images, ds.train_labels),
                           (ds.test_images, ds.test_labels)):
        assert images.dtype == np.uint8 and labels.dtype == np.int32
        assert images.shape == (len(labels), size, size, 3)
        assert labels.min() >= 0 and labels.max() < num_classes
    assert ds.num_classes == num_classes


def _bilinear(img, size):
    """Half-pixel-centre bilinear resize with edge clamping, in numpy."""
    h, w = img.shape

    def axis(n_in):
        pos = np.clip((np.arange(size) + 0.5) * n_in / size - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), pos - lo

    y0, y1, wy = axis(h)
    x0, x1, wx = axis(w)
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bot = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    return top * (1 - wy)[:, None] + bot * wy[:, None]


# --------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------


@pytest.fixture(scope='module')
def digits16():
    return load_dataset('digits', image_size=16)


def test_digits_shapes_and_counts(digits16):
    ds = digits16
    _check_dataset(ds, 16, 10)
    n_train, n_test = len(ds.train_labels), len(ds.test_labels)
    assert n_train + n_test == 1797
    assert abs(n_test / 1797 - 0.25) <= 0.01
    # Stratified: every class has ~25% of its examples in the test split.
    total = (np.bincount(ds.train_labels, minlength=10)
             + np.bincount(ds.test_labels, minlength=10))
    frac = np.bincount(ds.test_labels, minlength=10) / total
    np.testing.assert_allclose(frac, 0.25, atol=0.01)
    # Grayscale replicated; 0..16 scaled to the full 0..255 range.
    assert np.array_equal(ds.train_images[..., 0], ds.train_images[..., 2])
    assert ds.train_images.min() == 0 and ds.train_images.max() == 255


def test_digits_resize_matches_numpy_bilinear(digits16):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    train_idx, test_idx = train_test_split(
        np.arange(1797), test_size=0.25, stratify=raw.target, random_state=0)
    train_idx = np.sort(train_idx)
    np.testing.assert_array_equal(digits16.train_labels,
                                  raw.target[train_idx])
    for k in (0, 5, 100):
        expected = _bilinear(raw.images[train_idx[k]] * 255 / 16, 16)
        got = digits16.train_images[k, :, :, 0].astype(np.float64)
        np.testing.assert_allclose(got, expected, atol=0.51)


def test_digits_split_ignores_seed(digits16):
    other = load_dataset('digits', image_size=16, seed=123)
    np.testing.assert_array_equal(other.test_labels, digits16.test_labels)
    np.testing.assert_array_equal(other.test_images, digits16.test_images)


def test_digits_native_size_is_exact():
    from sklearn.datasets import load_digits

    ds = load_dataset('digits', image_size=8)
    all_images = np.concatenate([ds.train_images, ds.test_images])
    expected = np.round(load_digits().images * 255 / 16).astype(np.uint8)
    # Same multiset of images (the split reorders them).
    assert (sorted(map(bytes, all_images[..., 0]))
            == sorted(map(bytes, expected)))


# --------------------------------------------------------------------------
# synthetic
# --------------------------------------------------------------------------


def test_synthetic_deterministic_and_learnable():
    a = load_dataset('synthetic', image_size=8, synthetic_sizes=(200, 100),
                     seed=1)
    b = load_dataset('synthetic', image_size=8, synthetic_sizes=(200, 100),
                     seed=1)
    c = load_dataset('synthetic', image_size=8, synthetic_sizes=(200, 100),
                     seed=2)
    _check_dataset(a, 8, 10)
    assert len(a.train_labels) == 200 and len(a.test_labels) == 100
    for x, y in zip(a[1:5], b[1:5]):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.train_images, c.train_images)
    np.testing.assert_array_equal(np.bincount(a.train_labels), [20] * 10)
    # Nearest class mean on raw pixels must separate the classes.
    x_tr = a.train_images.reshape(200, -1).astype(np.float64)
    x_te = a.test_images.reshape(100, -1).astype(np.float64)
    means = np.stack([x_tr[a.train_labels == k].mean(0) for k in range(10)])
    pred = np.argmin(((x_te[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert np.mean(pred == a.test_labels) > 0.9


# --------------------------------------------------------------------------
# folder
# --------------------------------------------------------------------------


def _write(path, rgb, fmt):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), rgb, np.uint8)).save(path, format=fmt)


def _make_tree(root):
    """2 classes; 'cat' is created first but 'ant' sorts first (label 0)."""
    _write(root / 'train' / 'cat' / 'b.png', (200, 10, 10), 'PNG')
    _write(root / 'train' / 'cat' / 'a.PNG', (210, 20, 20), 'PNG')
    _write(root / 'train' / 'ant' / 'x.png', (10, 200, 10), 'PNG')
    _write(root / 'train' / 'ant' / 'y.jpg', (100, 100, 100), 'JPEG')
    _write(root / 'test' / 'ant' / 'z.jpeg', (10, 10, 200), 'JPEG')
    _write(root / 'test' / 'cat' / 'c.png', (5, 6, 7), 'PNG')
    (root / 'train' / 'cat' / 'notes.txt').write_text('not an image')
    # A grayscale PNG must come back as 3 equal channels.
    Image.fromarray(np.full((8, 8), 77, np.uint8), 'L').save(
        root / 'train' / 'ant' / 'w.png')


def test_folder_labels_order_and_pixels(tmp_path):
    _make_tree(tmp_path)
    ds = load_dataset(f'folder:{tmp_path}', image_size=8)
    _check_dataset(ds, 8, 2)
    # ant (label 0): w, x, y sorted by name; cat (label 1): a, b.
    np.testing.assert_array_equal(ds.train_labels, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(ds.train_images[:, 0, 0],
                                  [[77, 77, 77], [10, 200, 10],
                                   ds.train_images[2, 0, 0], [210, 20, 20],
                                   [200, 10, 10]])
    # JPEG is lossy: the grey square comes back close to (100, 100, 100).
    assert np.abs(ds.train_images[2].astype(int) - 100).max() <= 3
    np.testing.assert_array_equal(ds.test_labels, [0, 1])
    np.testing.assert_array_equal(ds.test_images[1, 4, 4], [5, 6, 7])


def test_folder_resize_and_cache(tmp_path, monkeypatch):
    _make_tree(tmp_path)
    first = load_dataset(f'folder:{tmp_path}', image_size=12)
    assert first.train_images.shape == (5, 12, 12, 3)
    # Resizing a constant image keeps it constant.
    np.testing.assert_array_equal(first.train_images[1],
                                  np.broadcast_to([10, 200, 10], (12, 12, 3)))
    caches = list((tmp_path / '.lwfedssl_cache').glob('*-12px.npz'))
    assert len(caches) == 1

    # A second load must come from the cache: decoding is disabled.
    def no_decode(*args, **kwargs):
        raise AssertionError('decoded although the cache is valid')

    real_decode = folder_source._decode
    monkeypatch.setattr(folder_source, '_decode', no_decode)
    second = load_dataset(f'folder:{tmp_path}', image_size=12)
    for x, y in zip(first[1:], second[1:]):
        np.testing.assert_array_equal(x, y)

    # A different size is a different cache entry, so it decodes.
    with pytest.raises(AssertionError, match='decoded'):
        load_dataset(f'folder:{tmp_path}', image_size=8)

    # A new file (even with an old mtime) invalidates the cache.
    calls = []

    def counting_decode(*args, **kwargs):
        calls.append(1)
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(folder_source, '_decode', counting_decode)
    new = tmp_path / 'train' / 'cat' / 'c.png'
    _write(new, (1, 2, 3), 'PNG')
    os.utime(new, (1e9, 1e9))
    third = load_dataset(f'folder:{tmp_path}', image_size=12)
    assert calls and len(third.train_labels) == 6


def test_folder_custom_cache_dir(tmp_path):
    _make_tree(tmp_path / 'data')
    load_dataset(f'folder:{tmp_path / "data"}', image_size=8,
                 cache_dir=str(tmp_path / 'cache'))
    assert len(list((tmp_path / 'cache').glob('data-*-8px.npz'))) == 1
    assert not (tmp_path / 'data' / '.lwfedssl_cache').exists()


def test_folder_errors(tmp_path):
    with pytest.raises(ConfigError, match='is not a directory'):
        load_dataset(f'folder:{tmp_path / "nope"}', image_size=8)
    _write(tmp_path / 'train' / 'a' / 'x.png', (1, 1, 1), 'PNG')
    with pytest.raises(ConfigError, match='test is missing'):
        load_dataset(f'folder:{tmp_path}', image_size=8)
    _write(tmp_path / 'test' / 'b' / 'x.png', (1, 1, 1), 'PNG')
    with pytest.raises(ValueError, match=r"only in train \['a'\]"):
        load_dataset(f'folder:{tmp_path}', image_size=8)
    (tmp_path / 'test' / 'a').mkdir()
    (tmp_path / 'train' / 'b').mkdir()
    with pytest.raises(ValueError, match='has no .jpg'):
        load_dataset(f'folder:{tmp_path}', image_size=8)


# --------------------------------------------------------------------------
# dispatch and tfds
# --------------------------------------------------------------------------


@pytest.mark.parametrize('source, match', [
    ('imagenet', r"data.source='imagenet': unknown source kind; allowed: 'digits', "
                 r"'synthetic'.*Fix: for a TFDS dataset write tfds:imagenet"),
    ('digits:extra', 'takes no argument'),
    ('tfds:', 'needs a name'),
    ('folder:', 'needs a path'),
])
def test_bad_sources(source, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(source, image_size=8)


def test_bad_image_size():
    with pytest.raises(ValueError, match=r'model.image_size=.*must be a positive int'):
        load_dataset('synthetic', image_size=0)


def test_tfds_not_prepared_fails_fast(tmp_path, no_network):
    start = time.perf_counter()
    with pytest.raises(ValueError) as info:
        load_dataset('tfds:cifar10', image_size=32, data_dir=str(tmp_path))
    assert time.perf_counter() - start < 5.0
    msg = str(info.value)
    assert 'not prepared' in msg and str(tmp_path) in msg
    assert "file_format='array_record'" in msg and 'download=True' in msg


def test_tfds_unknown_name(tmp_path, no_network):
    with pytest.raises(ValueError, match=r"data.source='tfds:.*unknown tfds dataset"):
        load_dataset('tfds:no_such_dataset_xyz', image_size=8,
                     data_dir=str(tmp_path))


@pytest.fixture(scope='module')
def tiny_tfds_dir(tmp_path_factory):
    """Prepares a 1-channel Tensor-feature dataset as ArrayRecord (no TF)."""
    import tensorflow_datasets as tfds

    class LwfedsslTinyGray(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version('1.0.0')

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, features=tfds.features.FeaturesDict({
                    'image': tfds.features.Tensor(shape=(6, 6, 1),
                                                  dtype=np.uint8),
                    'label': tfds.features.ClassLabel(num_classes=3)}))

        def _split_generators(self, dl_manager):
            return {'train': self._generate_examples(0, 6),
                    'test': self._generate_examples(6, 9)}

        def _generate_examples(self, lo, hi):
            for i in range(lo, hi):
                yield i, {'image': np.full((6, 6, 1), 20 * i, np.uint8),
                          'label': i % 3}

    data_dir = tmp_path_factory.mktemp('tfds')
    LwfedsslTinyGray(data_dir=str(data_dir),
                     file_format='array_record').download_and_prepare()
    return str(data_dir)


@pytest.mark.parametrize('size', [6, 4])
def test_tfds_prepared_dataset(tiny_tfds_dir, no_network, size):
    ds = load_dataset('tfds:lwfedssl_tiny_gray', image_size=size,
                      data_dir=tiny_tfds_dir)
    _check_dataset(ds, size, 3)
    # TFDS shuffles record order; compare (pixel value, label) pairs.
    for images, labels, ids in ((ds.train_images, ds.train_labels, range(6)),
                                (ds.test_images, ds.test_labels, range(6, 9))):
        # Constant gray images stay constant after resize, in all channels.
        assert np.all(images == images[:, :1, :1, :1])
        got = sorted(zip(images[:, 0, 0, 0].tolist(), labels.tolist()))
        assert got == [(20 * i, i % 3) for i in ids]


# --------------------------------------------------------------------------
# real CIFAR-10 JPEG archive
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_cifar10_jpeg_archive(tmp_path):
    if not CIFAR_ARCHIVE.is_file():
        pytest.skip(f'{CIFAR_ARCHIVE} not present')
    if shutil.which('tar'):  # 4x faster than the tarfile module.
        subprocess.run(['tar', 'xzf', str(CIFAR_ARCHIVE), '-C', str(tmp_path)],
                       check=True)
    else:
        with tarfile.open(CIFAR_ARCHIVE) as tf:
            tf.extractall(tmp_path, filter='data')
    # The archive holds train/ and test/ at its top level.
    ds = load_dataset(f'folder:{tmp_path}', image_size=32)
    _check_dataset(ds, 32, 10)
    assert len(ds.train_labels) == 50000 and len(ds.test_labels) == 10000
    np.testing.assert_array_equal(np.bincount(ds.train_labels), [5000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.test_labels), [1000] * 10)
    # Real photos: far from constant, mid-range mean.
    assert 100 < ds.train_images.mean() < 140
    assert ds.train_images.std() > 50
    start = time.perf_counter()
    cached = load_dataset(f'folder:{tmp_path}', image_size=32)
    assert time.perf_counter() - start < 10.0
    np.testing.assert_array_equal(cached.test_images, ds.test_images)
