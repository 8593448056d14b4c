"""Load labelled image datasets into host numpy arrays.

One entry point, ``load_dataset(source, image_size=...)``, where ``source`` is

* ``'digits'``: scikit-learn's bundled 8x8 digits (offline; the real-image
  learning signal for CI, environment-notes §2);
* ``'tfds:<name>'``: a TFDS dataset already prepared under ``data_dir`` as
  ArrayRecord, read with ``builder.as_data_source`` (no TensorFlow import);
* ``'folder:<path>'``: ``<path>/{train,test}/<class>/*.{jpg,jpeg,png}``
  (or ``<path>/<class>/*`` split per class with a fixed seed), decoded once
  with PIL and cached as ``.npz``;
* ``'images:<path>'``: every image under ``<path>``, no labels (pre-training
  only, like ``tfds:`` datasets without a ``label`` feature, e.g.
  ``tfds:coco/2017``);
* ``'medmnist:<path>'``: a MedMNIST(+) ``.npz`` file (train/val/test splits;
  paper notes §4.5), see ``medmnist_source``;
* ``'synthetic'``: 10 classes of coloured gratings plus noise, for unit tests.

Every source returns uint8 ``[N, S, S, 3]`` images (S = ``image_size``;
resizing is PIL bilinear, aspect ratio not kept) and int32 labels, or no
labels (``ImageDataset.labelled``); SSL code converts to float on device
(``augment.to_float``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image

# Re-exported: IMAGE_SUFFIXES and ImageDataset are public names of this module.
from lwfedssl_jax.data.dataset import (  # noqa: F401
    ImageDataset, _Request, _to_rgb)
from lwfedssl_jax.data.folder_source import (  # noqa: F401
    IMAGE_SUFFIXES, _load_folder, folder_path_problem)
from lwfedssl_jax.data.images_source import _load_images, images_path_problem
from lwfedssl_jax.data.medmnist_source import (  # noqa: F401
    _load_medmnist, medmnist_path_problem)
from lwfedssl_jax.data.tfds_source import _load_tfds, tfds_name_problem
from lwfedssl_jax.errors import ConfigError

# --- digits ------------------------------------------------------------------


def _load_digits(req: _Request) -> ImageDataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    raw = digits.images.astype(np.float32) * (255.0 / 16.0)  # [1797, 8, 8]
    s = req.image_size
    if s != 8:
        # Resize in float ('F' mode) and round once, so the 0..16 -> 0..255
        # scaling and the interpolation do not round twice.
        raw = np.stack([np.asarray(Image.fromarray(im, 'F').resize(
            (s, s), Image.BILINEAR)) for im in raw])
    gray = np.clip(np.round(raw), 0, 255).astype(np.uint8)  # [1797, S, S]
    images = np.repeat(gray[..., None], 3, axis=-1)
    labels = digits.target.astype(np.int32)
    # Fixed random_state: the held-out split never depends on `seed`.
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=0.25, stratify=labels,
        random_state=0)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return ImageDataset(req.source, images[train_idx], labels[train_idx],
                        images[test_idx], labels[test_idx], 10)


# --- synthetic ---------------------------------------------------------------


def _load_synthetic(req: _Request) -> ImageDataset:
    """Class c: own mean colour + a grating at angle c * 18 deg + noise."""
    n_train, n_test = req.synthetic_sizes
    if n_train < 1 or n_test < 1:
        raise ConfigError('data.synthetic_train/test', req.synthetic_sizes,
                          'both must be >= 1.')
    rng = np.random.default_rng(req.seed)
    num_classes, s = 10, req.image_size
    colours = rng.uniform(0.2, 0.8, (num_classes, 1, 1, 3))
    yy, xx = np.mgrid[0:s, 0:s] / s
    angles = np.arange(num_classes)[:, None, None] * np.pi / num_classes
    # Two cycles per image along direction `angle`.
    gratings = np.sin(4 * np.pi * (xx * np.cos(angles) + yy * np.sin(angles)))
    protos = colours + 0.15 * gratings[..., None]  # [10, S, S, 3] in ~[0, 1]

    def split(n):
        labels = rng.permutation(np.arange(n) % num_classes).astype(np.int32)
        x = protos[labels] + rng.normal(0.0, 0.1, (n, s, s, 3))
        return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8), labels

    train, test = split(n_train), split(n_test)
    return ImageDataset(req.source, *train, *test, num_classes)


# --- entry point -------------------------------------------------------------

SOURCES: dict[str, Callable[[_Request], ImageDataset]] = {
    'digits': _load_digits,
    'tfds': _load_tfds,
    'folder': _load_folder,
    'images': _load_images,
    'medmnist': _load_medmnist,
    'synthetic': _load_synthetic,
}
_NO_ARG = ('digits', 'synthetic')
ALLOWED_SOURCES = ("'digits', 'synthetic', 'tfds:<name>' (e.g. 'tfds:cifar10'), "
                   "'folder:<path>', 'images:<path>' (no labels) or 'medmnist:<path>.npz'")
# Sources known to have no labels before anything is read (a tfds dataset
# is known only once its features are read).
UNLABELLED_KINDS = ('images',)


# Each kind's rule for its argument, checkable without reading any data.
_ARG_PROBLEM = {'tfds': tfds_name_problem, 'folder': folder_path_problem,
                'images': images_path_problem, 'medmnist': medmnist_path_problem}


def check_source(source: str) -> None:
    """Raises `ConfigError` (key `data.source`) for a source string that
    cannot be read: unknown kind, an argument where none is taken, or a
    kind's own argument rule (a folder without train/ and test/, a missing
    .npz, ...). `load_dataset` and `validation` both call it."""
    kind, sep, arg = source.partition(':')
    if kind not in SOURCES:
        raise ConfigError('data.source', source, 'unknown source kind; allowed: '
                          f'{ALLOWED_SOURCES}.', f'for a TFDS dataset write tfds:{source}.'
                          if not sep else None)
    if kind in _NO_ARG and arg:
        raise ConfigError('data.source', source, f'source {kind!r} takes no argument.',
                          f'write {kind!r}.')
    problem = _ARG_PROBLEM[kind](arg) if kind in _ARG_PROBLEM else None
    if problem:
        raise ConfigError('data.source', source, problem)


def check_unlabelled_use(source: str, partition: str, eval_datasets: tuple) -> None:
    """Raises `ConfigError` where an unlabelled pre-training `source` meets a
    setting that needs labels: a label partition other than 'uniform', or
    an evaluation on the pre-training source itself (empty `eval.datasets`)."""
    if partition != 'uniform':
        raise ConfigError('data.partition', partition,
                          f'{source!r} has no labels to partition by; use \'uniform\' '
                          "(the paper's split of unlabeled COCO).")
    if not eval_datasets:
        raise ConfigError('eval.datasets', eval_datasets,
                          f'{source!r} has no labels, so the encoder must be evaluated on '
                          "labelled sources, e.g. ('tfds:cifar10', 'folder:/data/caltech101').")


def load_dataset(source: str, *, image_size: int, data_dir: str | None = None,
                 download: bool = False, cache_dir: str | None = None,
                 synthetic_sizes: tuple[int, int] = (512, 128),
                 seed: int = 0) -> ImageDataset:
    """Loads a labelled train/test image dataset into host memory.

    Args:
        source: ``'digits'``, ``'tfds:<name>'``, ``'folder:<path>'``,
            ``'images:<path>'``, ``'medmnist:<path>'`` or ``'synthetic'`` (see
            the module docstring).
        image_size: output side S; images come back [N, S, S, 3] uint8.
        data_dir: TFDS data directory (``tfds:`` only; None = TFDS default).
        download: ``tfds:`` only; allow ``download_and_prepare`` (needs
            internet, and TensorFlow for image features). If False, an
            unprepared dataset raises at once.
        cache_dir: ``folder:`` and ``images:``; where the decoded ``.npz``
            goes (default ``<path>/.lwfedssl_cache``).
        synthetic_sizes: ``synthetic`` only; (n_train, n_test).
        seed: ``synthetic`` only; the digits and folder splits are fixed.

    Returns:
        An ``ImageDataset``; only ``medmnist:`` fills its ``val_*`` fields;
        ``images:`` and label-less tfds datasets give an unlabelled one
        (``labelled`` False: training images only).

    Raises:
        ConfigError: unknown source kind, bad argument, unknown or
            unprepared tfds data, missing ``folder:`` directories, a missing
            or malformed (or multi-label) ``medmnist:`` file.
        ValueError: inconsistent folder classes.
    """
    check_source(source)
    kind, _, arg = source.partition(':')
    if not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ConfigError('model.image_size', image_size, 'must be a positive int.')
    req = _Request(source, arg, int(image_size), data_dir or None, download,
                   cache_dir, tuple(synthetic_sizes), seed)
    return SOURCES[kind](req)
