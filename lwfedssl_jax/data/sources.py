"""Load labelled image datasets into host numpy arrays.

One entry point, ``load_dataset(source, image_size=...)``, where ``source`` is

* ``'digits'``: scikit-learn's bundled 8x8 digits (offline; the real-image
  learning signal for CI, environment-notes §2);
* ``'tfds:<name>'``: a TFDS dataset already prepared under ``data_dir`` as
  ArrayRecord, read with ``builder.as_data_source`` (no TensorFlow import);
* ``'folder:<path>'``: ``<path>/{train,test}/<class>/*.{jpg,jpeg,png}``,
  decoded once with PIL and cached as ``.npz``;
* ``'synthetic'``: 10 classes of coloured gratings plus noise, for unit tests.

Every source returns uint8 ``[N, S, S, 3]`` images (S = ``image_size``;
resizing is PIL bilinear, aspect ratio not kept) and int32 labels; SSL code
converts to float on device (``augment.to_float``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
# Progress bars only for loads that take noticeable time.
_PROGRESS_MIN = 2000


class ImageDataset(NamedTuple):
    """A labelled train/test image dataset in host memory.

    Attributes:
        name: the ``source`` string it was loaded from.
        train_images: [N, H, W, 3] uint8.
        train_labels: [N] int32 in [0, num_classes).
        test_images: [M, H, W, 3] uint8.
        test_labels: [M] int32.
        num_classes: number of classes.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int


class _Request(NamedTuple):
    source: str
    arg: str  # The part after 'kind:' ('' if none).
    image_size: int
    data_dir: str | None
    download: bool
    cache_dir: str | None
    synthetic_sizes: tuple[int, int]
    seed: int


def _to_rgb(img: Image.Image, size: int) -> np.ndarray:
    """PIL image (any mode) -> [size, size, 3] uint8, bilinear if resized."""
    img = img.convert('RGB')  # 'L' is replicated, alpha dropped.
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, np.uint8)


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
        raise ValueError(f'synthetic_sizes must be positive, got '
                         f'{req.synthetic_sizes}.')
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


# --- tfds --------------------------------------------------------------------


def _tfds_split(builder, split: str,
                size: int) -> tuple[np.ndarray, np.ndarray]:
    """Reads one split: ([N, size, size, 3] uint8, [N] int32)."""
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
    labels = np.empty((n,), np.int32)
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


def _load_tfds(req: _Request) -> ImageDataset:
    import tensorflow_datasets as tfds  # Lazy: ~0.3 s, never imports TF.

    name = req.arg
    if not name:
        raise ValueError("tfds source needs a name, e.g. 'tfds:cifar10'.")
    try:
        builder = tfds.builder(name, data_dir=req.data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(f'Unknown tfds dataset {name!r}: '
                         f'{str(e).splitlines()[0]}') from None
    # Check before anything else: an unprepared offline load would otherwise
    # retry the download for minutes (environment-notes §1).
    if not builder.is_prepared():
        if not req.download:
            where = req.data_dir or '$TFDS_DATA_DIR or ~/tensorflow_datasets'
            raise ValueError(_NOT_PREPARED.format(
                name=name, where=where, path=builder.data_path))
        builder = tfds.builder(name, data_dir=req.data_dir,
                               file_format='array_record')
        builder.download_and_prepare()
    features = builder.info.features
    if 'image' not in features or 'label' not in features:
        raise ValueError(f'tfds dataset {name!r} needs "image" and "label" '
                         f'features; it has {sorted(features.keys())}.')
    splits = sorted(builder.info.splits.keys())
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


# --- folder ------------------------------------------------------------------


def _scan(split_dir: Path) -> tuple[dict[str, list[Path]], float, str]:
    """Lists ``split_dir/<class>/<image>`` files.

    Returns:
        {class: sorted image paths}, the newest mtime of any listed file or
        directory, and a fingerprint of the (relative path, size) list.
    """
    classes: dict[str, list[Path]] = {}
    newest = split_dir.stat().st_mtime
    digest = hashlib.sha1()
    for cdir in sorted(split_dir.iterdir()):
        if not cdir.is_dir() or cdir.name.startswith('.'):
            continue
        newest = max(newest, cdir.stat().st_mtime)
        entries = sorted((e for e in os.scandir(cdir)
                          if e.is_file() and
                          e.name.lower().endswith(IMAGE_SUFFIXES)),
                         key=lambda e: e.name)
        if not entries:
            raise ValueError(f'Class directory {cdir} has no .jpg/.jpeg/.png '
                             'images; remove it or add images.')
        for e in entries:
            st = e.stat()
            newest = max(newest, st.st_mtime)
            digest.update(f'{cdir.name}/{e.name}:{st.st_size}\n'.encode())
        classes[cdir.name] = [Path(e.path) for e in entries]
    if not classes:
        raise ValueError(f'{split_dir} has no class subdirectories; expected '
                         f'{split_dir}/<class_name>/*.jpg.')
    return classes, newest, digest.hexdigest()


def _decode(classes: dict[str, list[Path]], names: list[str], size: int,
            desc: str) -> tuple[np.ndarray, np.ndarray]:
    files = [(f, label) for label, c in enumerate(names) for f in classes[c]]
    images = np.empty((len(files), size, size, 3), np.uint8)
    labels = np.array([label for _, label in files], np.int32)
    for i, (f, _) in enumerate(tqdm(files, desc=desc, unit='img',
                                    disable=len(files) < _PROGRESS_MIN)):
        with Image.open(f) as img:
            images[i] = _to_rgb(img, size)
    return images, labels


def _load_folder(req: _Request) -> ImageDataset:
    if not req.arg:
        raise ValueError('folder source needs a path, e.g. '
                         "'folder:/data/cifar10'.")
    root = Path(req.arg).expanduser()
    layout = f'{root}/train/<class>/*.jpg and {root}/test/<class>/*.jpg'
    if not root.is_dir():
        raise FileNotFoundError(f'folder source: {root} is not a directory. '
                                f'Expected {layout}.')
    for split in ('train', 'test'):
        if not (root / split).is_dir():
            raise FileNotFoundError(
                f'folder source: {root / split} is missing. Expected '
                f'{layout}; if the data sits one level deeper, point '
                'folder: at the directory that contains train/ and test/.')
    scans = {split: _scan(root / split) for split in ('train', 'test')}
    names = sorted(scans['train'][0])
    if sorted(scans['test'][0]) != names:
        raise ValueError(
            f'folder source: train and test class sets differ under {root}: '
            f'only in train {sorted(set(names) - set(scans["test"][0]))}, '
            f'only in test {sorted(set(scans["test"][0]) - set(names))}.')
    newest = max(scans['train'][1], scans['test'][1])
    fingerprint = f'{scans["train"][2]}-{scans["test"][2]}'

    cache_dir = Path(req.cache_dir).expanduser() if req.cache_dir else (
        root / '.lwfedssl_cache')
    # The path hash lets one cache_dir serve several folders.
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:10]
    cache = cache_dir / f'{root.resolve().name}-{key}-{req.image_size}px.npz'
    arrays = _read_cache(cache, req.image_size, fingerprint, names, newest)
    if arrays is None:
        arrays = {}
        for split in ('train', 'test'):
            arrays[f'{split}_images'], arrays[f'{split}_labels'] = _decode(
                scans[split][0], names, req.image_size, f'decoding {split}')
        _write_cache(cache, arrays, req.image_size, fingerprint, names)
    return ImageDataset(req.source, arrays['train_images'],
                        arrays['train_labels'], arrays['test_images'],
                        arrays['test_labels'], len(names))


def _read_cache(cache: Path, image_size: int, fingerprint: str,
                names: list[str], newest: float) -> dict | None:
    """The cached arrays, or None if absent or stale."""
    if not cache.is_file() or cache.stat().st_mtime < newest:
        return None
    try:
        with np.load(cache) as z:
            if (int(z['image_size']) != image_size
                    or str(z['fingerprint']) != fingerprint
                    or list(z['class_names']) != names):
                return None
            return {k: z[k] for k in ('train_images', 'train_labels',
                                      'test_images', 'test_labels')}
    except (OSError, ValueError, KeyError) as e:
        logging.warning('Ignoring unreadable cache %s: %s', cache, e)
        return None


def _write_cache(cache: Path, arrays: dict, image_size: int, fingerprint: str,
                 names: list[str]) -> None:
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + f'.tmp{os.getpid()}')
        with open(tmp, 'wb') as f:  # A file object: savez adds no suffix.
            np.savez(f, image_size=image_size, fingerprint=fingerprint,
                     class_names=np.array(names), **arrays)
        os.replace(tmp, cache)  # Atomic: readers never see a partial file.
    except OSError as e:
        # A read-only dataset folder must not break loading; pass cache_dir.
        logging.warning('Could not write cache %s (%s); pass a writable '
                        'cache_dir to avoid decoding again.', cache, e)


# --- entry point -------------------------------------------------------------

SOURCES: dict[str, Callable[[_Request], ImageDataset]] = {
    'digits': _load_digits,
    'tfds': _load_tfds,
    'folder': _load_folder,
    'synthetic': _load_synthetic,
}
_NO_ARG = ('digits', 'synthetic')


def load_dataset(source: str, *, image_size: int, data_dir: str | None = None,
                 download: bool = False, cache_dir: str | None = None,
                 synthetic_sizes: tuple[int, int] = (512, 128),
                 seed: int = 0) -> ImageDataset:
    """Loads a labelled train/test image dataset into host memory.

    Args:
        source: ``'digits'``, ``'tfds:<name>'``, ``'folder:<path>'`` or
            ``'synthetic'`` (see the module docstring).
        image_size: output side S; images come back [N, S, S, 3] uint8.
        data_dir: TFDS data directory (``tfds:`` only; None = TFDS default).
        download: ``tfds:`` only; allow ``download_and_prepare`` (needs
            internet, and TensorFlow for image features). If False, an
            unprepared dataset raises at once.
        cache_dir: ``folder:`` only; where the decoded ``.npz`` goes (default
            ``<path>/.lwfedssl_cache``).
        synthetic_sizes: ``synthetic`` only; (n_train, n_test).
        seed: ``synthetic`` only; the digits and folder splits are fixed.

    Returns:
        An ``ImageDataset``.

    Raises:
        ValueError: unknown source kind, bad argument, unprepared tfds data,
            or inconsistent folder classes.
        FileNotFoundError: missing ``folder:`` directories.
    """
    kind, _, arg = source.partition(':')
    if kind not in SOURCES:
        raise ValueError(f'Unknown data source {source!r}; choose one of '
                         "'digits', 'synthetic', 'tfds:<name>', "
                         "'folder:<path>'.")
    if kind in _NO_ARG and arg:
        raise ValueError(f'Source {kind!r} takes no argument, got {source!r}.')
    if not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f'image_size must be a positive int, got '
                         f'{image_size!r}.')
    req = _Request(source, arg, int(image_size), data_dir or None, download,
                   cache_dir, tuple(synthetic_sizes), seed)
    return SOURCES[kind](req)
