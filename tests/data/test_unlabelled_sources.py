"""Pre-training sources without labels (`images:`, tfds without `label`) and
the seeded split of a class-per-folder tree without train/ and test/."""

import numpy as np
import pytest
from PIL import Image

from lwfedssl_jax.data import folder_source, sources
from lwfedssl_jax.data.sources import load_dataset
from lwfedssl_jax.errors import ConfigError, ConfigErrors


def _png(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def _unlabelled_tree(root):
    """Images at several depths, a hidden folder and a non-image file."""
    _png(root / 'b.png', 20)
    _png(root / 'a.png', 10)
    _png(root / 'sub' / 'c.PNG', 30)
    _png(root / 'sub' / 'deeper' / 'd.png', 40)
    _png(root / '.hidden' / 'e.png', 99)
    (root / 'notes.txt').write_text('not an image')


def test_images_source_reads_every_image_in_path_order(tmp_path):
    _unlabelled_tree(tmp_path)
    ds = load_dataset(f'images:{tmp_path}', image_size=8)
    assert not ds.labelled and ds.num_classes == 0
    assert ds.train_labels is None and ds.test_labels is None
    assert ds.test_images.shape == (0, 8, 8, 3)
    # Sorted relative paths: a.png, b.png, sub/c.PNG, sub/deeper/d.png.
    np.testing.assert_array_equal(ds.train_images[:, 0, 0, 0], [10, 20, 30, 40])


def test_images_source_is_cached(tmp_path, monkeypatch):
    _unlabelled_tree(tmp_path)
    first = load_dataset(f'images:{tmp_path}', image_size=4)
    monkeypatch.setattr(Image, 'open', lambda *a, **k: pytest.fail('decoded again'))
    second = load_dataset(f'images:{tmp_path}', image_size=4)
    np.testing.assert_array_equal(first.train_images, second.train_images)
    # A folder cache of the same tree never answers for the unlabelled one.
    assert {p.name.split('-')[-2] for p in (tmp_path / '.lwfedssl_cache').iterdir()} == {
        'unlabelled'}


@pytest.mark.parametrize('make, match', [
    (lambda root: None, 'no .jpg/.jpeg/.png file'),
    (lambda root: root.rmdir(), 'is not a directory'),
])
def test_images_source_errors(tmp_path, make, match):
    make(tmp_path)
    with pytest.raises(ConfigError, match=match):
        load_dataset(f'images:{tmp_path}', image_size=8)


def test_images_source_needs_a_path():
    with pytest.raises(ConfigError, match="images: needs a folder"):
        sources.check_source('images:')


def test_class_folders_without_split_are_split_per_class_with_a_fixed_seed(tmp_path):
    counts = {'ant': 10, 'bee': 3, 'cat': 2}
    for c, (name, n) in enumerate(counts.items()):
        for i in range(n):
            _png(tmp_path / name / f'{i:02d}.png', 10 * c + i)
    ds = load_dataset(f'folder:{tmp_path}', image_size=8)
    assert ds.labelled and ds.num_classes == 3
    # round(0.2 n), at least one test image and one training image per class.
    expected_test = {'ant': 2, 'bee': 1, 'cat': 1}
    for label, name in enumerate(counts):
        assert (ds.test_labels == label).sum() == expected_test[name]
        assert (ds.train_labels == label).sum() == counts[name] - expected_test[name]
    # Disjoint and complete: every image value appears exactly once.
    values = np.concatenate([ds.train_images[:, 0, 0, 0], ds.test_images[:, 0, 0, 0]])
    assert sorted(values.tolist()) == sorted(10 * c + i for c, n in enumerate(counts.values())
                                             for i in range(n))
    # The split follows SPLIT_SEED alone (recomputed here with numpy).
    order = np.random.default_rng([folder_source.SPLIT_SEED, 0]).permutation(10)
    np.testing.assert_array_equal(np.sort(ds.test_images[ds.test_labels == 0][:, 0, 0, 0]),
                                  np.sort(order[:2]))


def test_class_folder_with_one_image_cannot_be_split(tmp_path):
    _png(tmp_path / 'ant' / 'a.png', 1)
    _png(tmp_path / 'bee' / 'a.png', 2)
    _png(tmp_path / 'bee' / 'b.png', 3)
    with pytest.raises(ValueError, match='needs at least 2 per class'):
        load_dataset(f'folder:{tmp_path}', image_size=8)


@pytest.fixture(scope='module')
def tfds_without_labels(tmp_path_factory):
    """A tfds dataset with an image feature and no label (as coco/2017)."""
    import tensorflow_datasets as tfds

    class LwfedsslTinyUnlabelled(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version('1.0.0')

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                'image': tfds.features.Tensor(shape=(5, 5, 3), dtype=np.uint8),
                'objects': tfds.features.Tensor(shape=(2,), dtype=np.int64)}))

        def _split_generators(self, dl_manager):
            return {'train': self._generate_examples(0, 4),
                    'validation': self._generate_examples(4, 6)}

        def _generate_examples(self, lo, hi):
            for i in range(lo, hi):
                yield i, {'image': np.full((5, 5, 3), 10 * i, np.uint8),
                          'objects': np.array([i, i], np.int64)}

    data_dir = tmp_path_factory.mktemp('tfds_unlabelled')
    LwfedsslTinyUnlabelled(data_dir=str(data_dir),
                           file_format='array_record').download_and_prepare()
    return str(data_dir)


def test_tfds_without_label_gives_its_train_images(tfds_without_labels, no_network):
    ds = load_dataset('tfds:lwfedssl_tiny_unlabelled', image_size=5,
                      data_dir=tfds_without_labels)
    assert not ds.labelled and ds.test_images.shape == (0, 5, 5, 3)
    assert sorted(ds.train_images[:, 0, 0, 0].tolist()) == [0, 10, 20, 30]


@pytest.mark.parametrize('partition, eval_datasets, key', [
    ('dirichlet', ('synthetic',), 'data.partition'),
    ('uniform', (), 'eval.datasets'),
])
def test_unlabelled_use_needs_uniform_split_and_eval_datasets(partition, eval_datasets, key):
    with pytest.raises(ConfigError, match=key):
        sources.check_unlabelled_use('images:/x', partition, eval_datasets)
    sources.check_unlabelled_use('images:/x', 'uniform', ('synthetic',))   # allowed


def test_validation_refuses_unlabelled_pre_training_without_eval_datasets(tmp_path):
    from configs import quickstart
    from lwfedssl_jax import validation
    _unlabelled_tree(tmp_path)
    config = quickstart.get_config('smoke=1')
    config.unlock()
    config.data.source = f'images:{tmp_path}'
    with pytest.raises(ConfigErrors, match=r'eval.datasets=\(\): .* has no labels'):
        validation.check_config(config)
    config.eval.datasets = ('digits',)
    validation.check_config(config)   # allowed


def test_training_on_unlabelled_images_evaluates_on_eval_datasets(tmp_path):
    """Pre-training reads no label: a smoke run on a folder of unlabelled
    images, evaluated (kNN) on digits; the partition splits all images."""
    from configs import quickstart
    from lwfedssl_jax import train
    rng = np.random.default_rng(0)
    (tmp_path / 'data').mkdir()
    for i in range(48):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), np.uint8)).save(
            tmp_path / 'data' / f'{i:02d}.png')
    config = quickstart.get_config('smoke=1')
    config.unlock()
    config.data.source = f'images:{tmp_path / "data"}'
    config.eval.datasets = ('digits',)
    config.eval.protocols = ('knn',)
    summary = train.run(config, str(tmp_path / 'run'))
    assert 'digits/knn_top1' in summary['final_eval']
    import json
    with open(tmp_path / 'run' / 'partition.json') as f:
        assert sum(json.load(f)['sizes']) == 48
