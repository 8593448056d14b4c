"""The `medmnist:<path>` source, its config and its static check, on tiny
MedMNIST-format files written by `medmnist_fixture` (no download, no training)."""

import logging

import numpy as np
import pytest

from configs import medmnist
from lwfedssl_jax import builders, validation
from lwfedssl_jax.data.federated import make_federated_data
from lwfedssl_jax.data.sources import ALLOWED_SOURCES, SOURCES, check_source, load_dataset
from lwfedssl_jax.errors import ConfigError, ConfigErrors

from medmnist_fixture import medmnist_arrays, write_medmnist   # noqa: E402  (tests/data/)

SPLITS = ('train', 'val', 'test')


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights of half-pixel-centre bilinear with edge clamping."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    w = np.zeros((n_out, n_in))
    w[np.arange(n_out), lo] += 1 - (pos - lo)
    w[np.arange(n_out), hi] += pos - lo
    return w


def _load(path, size=28):
    return load_dataset(f'medmnist:{path}', image_size=size)


def test_registered():
    assert 'medmnist' in SOURCES and 'medmnist:' in ALLOWED_SOURCES


def test_rgb_at_native_size_is_exact(tmp_path):
    path = write_medmnist(tmp_path / 'blood.npz', rgb=True, n=(40, 12, 20), num_classes=4)
    ds = _load(path)
    raw = medmnist_arrays(rgb=True, n=(40, 12, 20), num_classes=4)
    assert ds.name == f'medmnist:{path}'
    assert ds.num_classes == 4
    got = {'train': (ds.train_images, ds.train_labels), 'val': (ds.val_images, ds.val_labels),
           'test': (ds.test_images, ds.test_labels)}
    for split, n in zip(SPLITS, (40, 12, 20)):
        images, labels = got[split]
        assert images.dtype == np.uint8 and images.shape == (n, 28, 28, 3)
        assert labels.dtype == np.int32 and labels.shape == (n,)
        np.testing.assert_array_equal(images, raw[f'{split}_images'])
        np.testing.assert_array_equal(labels, raw[f'{split}_labels'][:, 0])
        # The fixture cycles through the classes: n / 4 of each per split.
        np.testing.assert_array_equal(np.bincount(labels, minlength=4), [n // 4] * 4)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    path = write_medmnist(tmp_path / 'organa.npz', rgb=False)
    ds = _load(path)
    gray = medmnist_arrays(rgb=False)['test_images']          # [20, 28, 28]
    assert ds.test_images.shape == (20, 28, 28, 3)
    for ch in range(3):
        np.testing.assert_array_equal(ds.test_images[..., ch], gray)


@pytest.mark.parametrize('rgb', [True, False])
def test_resize_is_bilinear(tmp_path, rgb):
    path = write_medmnist(tmp_path / 'm.npz', rgb=rgb)
    ds = _load(path, size=56)
    raw = medmnist_arrays(rgb=rgb)['train_images'].astype(np.float64)
    if not rgb:
        raw = np.repeat(raw[..., None], 3, axis=-1)
    w = _bilinear_matrix(28, 56)
    assert ds.train_images.shape == (40, 56, 56, 3) and ds.val_images.shape[1:] == (56, 56, 3)
    for k in (0, 17, 39):
        for ch in range(3):
            expected = w @ raw[k, :, :, ch] @ w.T
            # PIL resizes in two passes with a uint8 image in between, so
            # rounding twice: off by at most 1 from the exact value.
            np.testing.assert_allclose(ds.train_images[k, :, :, ch], expected, atol=1.0)


def test_other_sources_have_no_val_split():
    ds = load_dataset('synthetic', image_size=8, synthetic_sizes=(10, 10))
    assert ds.val_images is None and ds.val_labels is None


def test_num_classes_is_max_label_plus_one_over_all_splits(tmp_path, caplog):
    # Class 5 only in the test split: counted, and classes 4, 5 (absent from
    # train) are reported.
    test_labels = medmnist_arrays()['test_labels'].copy()
    test_labels[3, 0] = 5
    path = write_medmnist(tmp_path / 'm.npz', test_labels=test_labels)
    with caplog.at_level(logging.WARNING):
        ds = _load(path)
    assert ds.num_classes == 6
    assert 'classes [4, 5] never occur in the train split' in caplog.text


def _bad_files():
    """name -> (fixture overrides, or a writer of a non-fixture file, expected text)."""
    n = 40
    return {
        'missing_key': (dict(val_labels=None), r"lacks keys \['val_labels'\].*a MedMNIST "
                        r"file has \['train_images', 'train_labels', 'val_images'"),
        'multi_label': (dict(train_labels=np.zeros((n, 14), np.uint8)),
                        r'train split: labels have shape \[40, 14\]: a multi-label set'),
        'float_images': (dict(test_images=np.zeros((20, 28, 28, 3), np.float32)),
                         'test split: images have dtype float32; MedMNIST images are uint8'),
        'float_labels': (dict(val_labels=np.zeros((10, 1), np.float32)),
                         'val split: labels have dtype float32; expected integers'),
        'not_square': (dict(train_images=np.zeros((n, 28, 30), np.uint8)),
                       r'images have shape \[40, 28, 30\]; expected square'),
        'four_channels': (dict(train_images=np.zeros((n, 28, 28, 4), np.uint8)),
                          r'images have shape \[40, 28, 28, 4\]'),
        'count_mismatch': (dict(train_labels=np.zeros((n - 1, 1), np.uint8)),
                           'train split: 40 images but 39 labels'),
        'negative_label': (dict(test_labels=-np.ones((20, 1), np.int64)),
                           'labels include -1'),
        'empty_train': (dict(train_images=np.zeros((0, 28, 28, 3), np.uint8),
                             train_labels=np.zeros((0, 1), np.uint8)), 'train split: is empty'),
    }


@pytest.mark.parametrize('name', sorted(_bad_files()))
def test_malformed_files_are_refused_naming_data_source(tmp_path, name):
    replace, match = _bad_files()[name]
    path = write_medmnist(tmp_path / 'bad.npz', **replace)
    with pytest.raises(ConfigError, match=match) as info:
        _load(path)
    assert info.value.key == 'data.source'
    assert info.value.value == f'medmnist:{path}'


def _write_text(path):
    path.write_text('hello')
    return str(path)


def _write_npy(path):
    with open(path, 'wb') as f:   # A lone array under a .npz name.
        np.save(f, np.zeros(3))
    return str(path)


@pytest.mark.parametrize('make, match', [
    (lambda d: str(d / 'absent.npz'), 'absent.npz does not exist'),
    (lambda d: str(d / 'x.npy'), 'is not a .npz file'),
    (lambda d: '', 'needs a path'),
    (lambda d: _write_text(d / 'text.npz'), 'is not a readable .npz archive'),
    (lambda d: _write_npy(d / 'one.npz'), r'one array \[3\], not named arrays'),
])
def test_bad_paths_are_refused_naming_data_source(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(ConfigError, match=match) as info:
        _load(path)
    assert info.value.key == 'data.source'


def test_source_errors_checks_the_file_statically(tmp_path):
    path = write_medmnist(tmp_path / 'm.npz')
    assert check_source(f'medmnist:{path}') is None
    for source, match in ((f'medmnist:{tmp_path}/none.npz', 'does not exist'),
                          (f'medmnist:{tmp_path}', 'is not a .npz file'),
                          ('medmnist:', 'needs a path')):
        with pytest.raises(ConfigError) as info:
            check_source(source)
        assert info.value.key == 'data.source' and match in info.value.problem


# --- configs/medmnist.py -----------------------------------------------------


def test_config_passes_validation_with_a_file_and_fails_without(tmp_path):
    path = write_medmnist(tmp_path / 'm.npz')
    validation.check_config(medmnist.get_config(f'path={path},smoke=1'))
    validation.check_config(medmnist.get_config(f'path={path}'))
    with pytest.raises(ConfigErrors, match='data.source=.*none.npz does not exist'):
        validation.check_config(medmnist.get_config(f'path={tmp_path}/none.npz,smoke=1'))


def test_config_holds_the_paper_settings(tmp_path):
    path = write_medmnist(tmp_path / 'm.npz')
    c = medmnist.get_config(f'path={path}')
    assert c.data.source == f'medmnist:{path}'
    assert (c.model.image_size, c.model.patch_size, c.model.width, c.model.depth) == (
        64, 4, 192, 12)
    assert (c.data.partition, c.data.dirichlet_alpha) == ('dirichlet', 5.0)
    assert (c.fl.num_clients, c.fl.clients_per_round, c.fl.batch_size) == (10, 10, 128)
    assert (c.fl.total_rounds, c.fl.local_epochs, c.mode) == (180, 3, 'layerwise')
    plan = builders.build(c).plan
    assert len(plan) == 12 and sum(s.rounds for s in plan) == 180
    e2e = builders.build(medmnist.get_config(f'path={path},mode=e2e')).plan
    assert len(e2e) == 1 and e2e[0].rounds == 180


def test_config_variant_args(tmp_path):
    path = write_medmnist(tmp_path / 'm.npz')
    c = medmnist.get_config(f'path={path},beta=0.5,batch_size=256,image_size=128,'
                            'patch_size=8,method=byol,mode=progressive')
    assert c.data.dirichlet_alpha == 0.5 and c.fl.batch_size == 256
    assert (c.model.image_size, c.model.patch_size) == (128, 8)
    assert (c.ssl.name, c.mode) == ('byol', 'progressive')
    validation.check_config(c)
    with pytest.raises(ConfigError, match='Unknown config argument'):
        medmnist.get_config('size=64')


def test_smoke_config_loads_and_partitions_the_fixture(tmp_path):
    path = write_medmnist(tmp_path / 'm.npz', n=(200, 40, 80))
    c = medmnist.get_config(f'path={path},smoke=1')
    dataset, fed, public = builders.load_data(c)
    assert dataset.train_images.shape == (200, 16, 16, 3)
    assert dataset.val_images.shape == (40, 16, 16, 3) and public.shape[0] == 0
    assert fed.num_clients == 3 and int(fed.sizes.sum()) == 200
    validation.check_client_data(c, fed.sizes, 200)   # batch fits every client


# --- FederatedData.labels ----------------------------------------------------


@pytest.mark.parametrize('kind', ['uniform', 'dirichlet'])
def test_federated_labels_align_with_indices(kind):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, 60).astype(np.int32)
    # Each image carries its own index, so rows can be traced back.
    images = np.broadcast_to(np.arange(60, dtype=np.uint8)[:, None, None, None],
                             (60, 2, 2, 3)).copy()
    fed = make_federated_data(images, labels, num_clients=4, kind=kind, alpha=1.0, seed=0)
    assert len(fed.labels) == len(fed.indices) == 4
    for c in range(4):
        np.testing.assert_array_equal(fed.labels[c], labels[fed.indices[c]])
        n = int(fed.sizes[c])
        np.testing.assert_array_equal(np.asarray(fed.images[c, :n, 0, 0, 0]), fed.indices[c])
    np.testing.assert_array_equal(np.sort(np.concatenate(fed.indices)), np.arange(60))



@pytest.mark.parametrize('beta', ['50', '5', '0.5'])
def test_table13_rows_at_paper_scale_read_medmnist(tmp_path, beta):
    from configs import tables6_8
    path = str(tmp_path / 'blood.npz')
    write_medmnist(path)
    config = tables6_8.get_config(f'row=beta{beta}_lw,scale=paper,path={path}')
    validation.check_config(config)
    assert config.data.source == f'medmnist:{path}'
    assert (config.data.partition, config.data.dirichlet_alpha) == ('dirichlet', float(beta))
    assert (config.model.image_size, config.fl.batch_size) == (64, 128)
    with pytest.raises(ConfigError, match=r":path='': Table 13 at paper scale reads MedMNIST"):
        tables6_8.get_config(f'row=beta{beta}_lw,scale=paper')
