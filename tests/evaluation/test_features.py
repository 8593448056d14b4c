"""Tests for `extract_features` and the shared split validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lwfedssl_jax.evaluation.features import (check_labeled_features,
                                              extract_features)


def _reference_features(images):
    """Per-image channel means and channel maxima, in numpy: [N, 6]."""
    images = images.astype(np.float64)
    return np.concatenate([images.mean(axis=(1, 2)), images.max(axis=(1, 2))],
                          axis=1)


def _make_feature_fn():
    """Jitted jnp version of `_reference_features` that records its inputs."""
    traced_shapes = []

    def fn(batch):
        traced_shapes.append(batch.shape)  # Runs only when jax (re)traces.
        x = batch.astype(jnp.float32)
        return jnp.concatenate([x.mean(axis=(1, 2)), x.max(axis=(1, 2))], axis=1)

    return jax.jit(fn), traced_shapes


def _images(num, seed=0):
    return np.random.default_rng(seed).integers(
        0, 256, size=(num, 5, 4, 3), dtype=np.uint8)


@pytest.mark.parametrize('num', [1, 7, 8, 9, 20])
def test_matches_numpy_reference(num):
    fn, _ = _make_feature_fn()
    images = _images(num)
    out = extract_features(fn, images, batch_size=8)
    assert out.shape == (num, 6) and out.dtype == np.float32
    np.testing.assert_allclose(out, _reference_features(images), rtol=1e-5)


def test_compiles_once_for_any_n():
    fn, traced_shapes = _make_feature_fn()
    for num in (3, 10, 16, 17):
        extract_features(fn, _images(num, seed=num), batch_size=4)
    # One trace, always with the padded batch shape.
    assert traced_shapes == [(4, 5, 4, 3)]


def test_padding_does_not_leak_into_rows():
    # Batch size must not change any row: compare 1 row per call with one
    # big padded call.
    fn, _ = _make_feature_fn()
    images = _images(5)
    np.testing.assert_array_equal(extract_features(fn, images, batch_size=1),
                                  extract_features(fn, images, batch_size=64))


def test_empty_input_gives_empty_features():
    fn, _ = _make_feature_fn()
    out = extract_features(fn, np.zeros((0, 5, 4, 3), np.uint8), batch_size=4)
    assert out.shape == (0, 6) and out.dtype == np.float32


def test_progress_bar_runs(capsys):
    fn, _ = _make_feature_fn()
    out = extract_features(fn, _images(9), batch_size=4, progress=True)
    assert out.shape == (9, 6)
    assert 'features' in capsys.readouterr().err


def test_casts_output_to_float32():
    fn = jax.jit(lambda b: b.reshape(b.shape[0], -1)[:, :2].astype(jnp.int32))
    images = _images(3)
    out = extract_features(fn, images, batch_size=2)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, images.reshape(3, -1)[:, :2])


@pytest.mark.parametrize('images, batch_size, match', [
    (np.zeros((4, 5, 4), np.uint8), 2, r'\[N, H, W, 3\]'),
    (np.zeros((4, 5, 4, 1), np.uint8), 2, r'\[N, H, W, 3\]'),
    (np.zeros((4, 5, 4, 3), np.float32), 2, 'uint8'),
    (np.zeros((4, 5, 4, 3), np.uint8), 0, 'batch_size'),
])
def test_rejects_bad_input(images, batch_size, match):
    fn, _ = _make_feature_fn()
    with pytest.raises(ValueError, match=match):
        extract_features(fn, images, batch_size=batch_size)


def test_rejects_bad_feature_fn_output():
    spatial = jax.jit(lambda b: b.astype(jnp.float32))  # Not pooled: 4-D.
    with pytest.raises(ValueError, match=r'\[batch_size, D\]'):
        extract_features(spatial, _images(3), batch_size=2)


def _split(n_train=6, n_test=4, dim=3):
    rng = np.random.default_rng(0)
    return (rng.normal(size=(n_train, dim)), rng.integers(0, 3, n_train),
            rng.normal(size=(n_test, dim)), rng.integers(0, 3, n_test))


def test_check_labeled_features_converts_dtypes():
    out = check_labeled_features(*_split(), num_classes=3)
    assert [a.dtype for a in out] == [np.float32, np.int32] * 2


@pytest.mark.parametrize('index, value, match', [
    (0, np.zeros((6,)), r'train_features must be \[N, D\]'),
    (0, np.zeros((0, 3)), 'empty'),
    (2, np.zeros((4, 5)), 'D=3 but test_features have D=5'),
    (2, np.full((4, 3), np.nan), 'NaN'),
    (1, np.zeros((5,), np.int64), r'train_labels must be \[N\] = \[6\]'),
    (3, np.zeros((4,), np.float32), 'integers'),
    (3, np.array([0, 1, 2, 3]), r'\[0, 3\)'),
    (1, np.array([0, -1, 0, 0, 0, 0]), r'\[0, 3\)'),
])
def test_check_labeled_features_errors(index, value, match):
    args = list(_split())
    args[index] = value
    with pytest.raises(ValueError, match=match):
        check_labeled_features(*args, num_classes=3)


def test_check_labeled_features_rejects_bad_num_classes():
    with pytest.raises(ValueError, match='num_classes'):
        check_labeled_features(*_split(), num_classes=0)
