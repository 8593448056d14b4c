"""The ``tfds:<name>`` source: a TFDS dataset prepared as ArrayRecord.

A dataset with ``image`` and ``label`` features gives its ``train`` and
``test`` splits; one without ``label`` (e.g. ``coco/2017``, whose objects
are no image label) gives the images of its ``train`` split alone, for
pre-training (``ImageDataset.labelled`` False).
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from lwfedssl_jax.data.dataset import (_PROGRESS_MIN, ImageDataset, _Request,
                                       _to_rgb, unlabelled)
from lwfedssl_jax.errors import ConfigError


def _tfds_split(builder, split: str, size: int,
                labelled: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Reads one split: ([N, size, size, 3] uint8, [N] int32 or None)."""
    try:
        src = builder.as_data_source(split=split)
    except NotImplementedError as e:  # Prepared as TFRecord: needs TF.
        raise ValueError(
            f'tfds dataset {builder.name!r} under {builder.data_dir} is '
            'stored in a format without random access (TFRecord); reading '
            'it needs TensorFlow. Re-prepare it as ArrayRecord: tfds.builder('
            f"'{builder.name}', data_dir=..., file_format='array_record')"
            f'.download_and_prepare(). ({e})') from None
    n = len(src)
    images = np.empty((n, size, size, 3), np.uint8)
    labels = np.empty((n,), np.int32) if labelled else None
    chunk = 1024
    with tqdm(total=n, desc=f'{builder.name} {split}', unit='img',
              disable=n < _PROGRESS_MIN) as bar:
        for start in range(0, n, chunk):
            for i, ex in enumerate(src.__getitems__(
                    range(start, min(start + chunk, n))), start):
                img = np.asarray(ex['image'])
                if img.dtype != np.uint8:
                    raise ValueError(f'tfds {builder.name!r}: image dtype '
                                     f'{img.dtype}, expected uint8.')
                if img.shape != (size, size, 3):
                    img = _to_rgb(Image.fromarray(
                        img[..., 0] if img.shape[-1] == 1 else img), size)
                images[i] = img
                if labelled:
                    labels[i] = ex['label']
            bar.update(min(chunk, n - start))
    return images, labels


_NOT_PREPARED = (
    'tfds dataset {name!r} is not prepared under data_dir={where} (looked in '
    '{path}) and download=False, so nothing was fetched.\n'
    'On a machine with internet, prepare it once as ArrayRecord (readable '
    'without TensorFlow):\n'
    '  pip install tensorflow-cpu\n'
    '  python -c "import tensorflow_datasets as tfds; tfds.builder('
    "'{name}', data_dir='DATA_DIR', file_format='array_record')"
    '.download_and_prepare()"\n'
    'then copy DATA_DIR here and pass it as data_dir '
    '(--config.data.data_dir); or pass download=True '
    '(--config.data.download=True) on a machine with internet and '
    'TensorFlow.')


def tfds_name_problem(name: str) -> str | None:
    """What is wrong with ``tfds:<name>`` before reading the catalogue, or
    None (whether the name exists is known only from tfds itself)."""
    return None if name else "tfds: needs a name, e.g. 'tfds:cifar10'."


def _load_tfds(req: _Request) -> ImageDataset:
    import tensorflow_datasets as tfds  # Lazy: ~0.3 s, never imports TF.

    name = req.arg
    if tfds_name_problem(name):
        raise ConfigError('data.source', req.source, tfds_name_problem(name))
    try:
        builder = tfds.builder(name, data_dir=req.data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ConfigError('data.source', req.source, f'unknown tfds dataset {name!r}: '
                          f'{str(e).splitlines()[0]}') from None
    # Check before anything else: an unprepared offline load would otherwise
    # retry the download for minutes (environment-notes §1).
    if not builder.is_prepared():
        if not req.download:
            where = req.data_dir or '$TFDS_DATA_DIR or ~/tensorflow_datasets'
            raise ConfigError('data.source', req.source, _NOT_PREPARED.format(
                name=name, where=where, path=builder.data_path))
        builder = tfds.builder(name, data_dir=req.data_dir,
                               file_format='array_record')
        builder.download_and_prepare()
    features = builder.info.features
    splits = sorted(builder.info.splits.keys())
    if 'image' not in features:
        raise ValueError(f'tfds dataset {name!r} needs an "image" feature; it has '
                         f'{sorted(features.keys())}.')
    if 'label' not in features:   # pre-training images only
        if 'train' not in splits:
            raise ValueError(f"tfds dataset {name!r} has no 'train' split to pre-train "
                             f'on; it has {splits}.')
        return unlabelled(req.source, _tfds_split(
            builder, 'train', req.image_size, labelled=False)[0])
    if not {'train', 'test'} <= set(splits):
        raise ValueError(f"tfds dataset {name!r} needs 'train' and 'test' "
                         f'splits; it has {splits}.')
    label_feature = features['label']
    train = _tfds_split(builder, 'train', req.image_size)
    test = _tfds_split(builder, 'test', req.image_size)
    num_classes = getattr(label_feature, 'num_classes', None)
    if num_classes is None:
        num_classes = int(max(train[1].max(), test[1].max())) + 1
    return ImageDataset(req.source, *train, *test, int(num_classes))
