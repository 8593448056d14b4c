"""The ``folder:<path>`` source: per-class image folders, ``.npz`` cached.

Two layouts: ``<path>/{train,test}/<class>/*.jpg`` (the dataset's own split),
or ``<path>/<class>/*.jpg`` for a dataset without an official test split
(Caltech-101's ``101_ObjectCategories``): then each class is split with a
fixed seed, ``TEST_FRACTION`` of its images (rounded, at least one, and at
least one left for training) going to test, so the split is the same on
every machine and never depends on ``config.seed``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from lwfedssl_jax.data.dataset import (_PROGRESS_MIN, ImageDataset, _Request,
                                       _to_rgb)
from lwfedssl_jax.errors import ConfigError

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
# The split of a class-per-folder tree without train/ and test/ (module doc).
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def scan(split_dir: Path) -> tuple[dict[str, list[Path]], float, str]:
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


def decode_files(files: list[Path], size: int, desc: str) -> np.ndarray:
    """`[len(files), size, size, 3]` uint8: each image file as RGB at S x S,
    with a progress bar for long lists (shared with `images:`)."""
    images = np.empty((len(files), size, size, 3), np.uint8)
    for i, f in enumerate(tqdm(files, desc=desc, unit='img',
                               disable=len(files) < _PROGRESS_MIN)):
        with Image.open(f) as img:
            images[i] = _to_rgb(img, size)
    return images


def _decode(classes: dict[str, list[Path]], names: list[str], size: int,
            desc: str) -> tuple[np.ndarray, np.ndarray]:
    files = [(f, label) for label, c in enumerate(names) for f in classes[c]]
    labels = np.array([label for _, label in files], np.int32)
    return decode_files([f for f, _ in files], size, desc), labels


def folder_path_problem(arg: str) -> str | None:
    """What is wrong with the path of ``folder:<arg>``, or None.

    Shared by the loader and ``validation`` (through
    ``sources.check_source``), so the static check and the load refuse the
    same paths with the same words.
    """
    if not arg:
        return "folder: needs a path, e.g. 'folder:/data/cifar10'."
    root = Path(arg).expanduser()
    missing = [s for s in ('train', 'test') if not (root / s).is_dir()]
    if not missing or (len(missing) == 2 and _has_class_dirs(root)):
        return None
    why = ('it is not a directory' if not root.is_dir()
           else ', '.join(f'{root / s} is missing' for s in missing))
    return (f'{root} lacks {missing} ({why}); expected {root}/train/<class>/*.jpg and '
            f'{root}/test/<class>/*.jpg, or {root}/<class>/*.jpg (split with a fixed '
            'seed); if the data sits one level deeper, point folder: at the directory '
            'that contains train/ and test/ (or the class folders).')


def _has_class_dirs(root: Path) -> bool:
    """Whether `root` holds class folders (and no train/ nor test/)."""
    if not root.is_dir():
        return False
    with os.scandir(root) as entries:
        return any(e.is_dir() and not e.name.startswith('.') for e in entries)


def split_per_class(classes: dict[str, list[Path]]) -> dict[str, dict[str, list[Path]]]:
    """Splits each class's sorted files into train / test with `SPLIT_SEED`:
    round(TEST_FRACTION x n) test images, at least one, at least one kept
    for training. Returns {'train': {class: paths}, 'test': {class: paths}}."""
    out = {'train': {}, 'test': {}}
    for i, (name, files) in enumerate(sorted(classes.items())):
        if len(files) < 2:
            raise ValueError(f'Class folder {files[0].parent} has {len(files)} image; a '
                             'train / test split needs at least 2 per class.')
        order = np.random.default_rng([SPLIT_SEED, i]).permutation(len(files))
        n_test = min(max(1, round(TEST_FRACTION * len(files))), len(files) - 1)
        test = set(order[:n_test].tolist())
        out['test'][name] = [f for j, f in enumerate(files) if j in test]
        out['train'][name] = [f for j, f in enumerate(files) if j not in test]
    return out


def _load_folder(req: _Request) -> ImageDataset:
    problem = folder_path_problem(req.arg)
    if problem:
        raise ConfigError('data.source', req.source, problem)
    root = Path(req.arg).expanduser()
    if (root / 'train').is_dir():
        scans = {split: scan(root / split) for split in ('train', 'test')}
    else:   # class folders only: a fixed per-class split
        classes, newest, digest = scan(root)
        scans = {split: (files, newest, f'{digest}-split{SPLIT_SEED}-{TEST_FRACTION}')
                 for split, files in split_per_class(classes).items()}
    names = sorted(scans['train'][0])
    if sorted(scans['test'][0]) != names:
        raise ValueError(
            f'folder source: train and test class sets differ under {root}: '
            f'only in train {sorted(set(names) - set(scans["test"][0]))}, '
            f'only in test {sorted(set(scans["test"][0]) - set(names))}.')
    newest = max(scans['train'][1], scans['test'][1])
    fingerprint = f'{scans["train"][2]}-{scans["test"][2]}'

    cache = cache_path(root, req.cache_dir, req.image_size)
    arrays = read_cache(cache, req.image_size, fingerprint, names, newest)
    if arrays is None:
        arrays = {}
        for split in ('train', 'test'):
            arrays[f'{split}_images'], arrays[f'{split}_labels'] = _decode(
                scans[split][0], names, req.image_size, f'decoding {split}')
        write_cache(cache, arrays, req.image_size, fingerprint, names)
    return ImageDataset(req.source, arrays['train_images'],
                        arrays['train_labels'], arrays['test_images'],
                        arrays['test_labels'], len(names))


_SPLIT_ARRAYS = ('train_images', 'train_labels', 'test_images', 'test_labels')


def cache_path(root: Path, cache_dir: str | None, image_size: int, kind: str = '') -> Path:
    """Where the decoded arrays of `root` at `image_size` are cached (default
    `<root>/.lwfedssl_cache`); `kind` tells sources reading one tree apart."""
    cache_dir = Path(cache_dir).expanduser() if cache_dir else root / '.lwfedssl_cache'
    # The path hash lets one cache_dir serve several folders.
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:10]
    return cache_dir / f'{root.resolve().name}-{key}{kind}-{image_size}px.npz'


def read_cache(cache: Path, image_size: int, fingerprint: str,
                names: list[str], newest: float,
                keys: tuple[str, ...] = _SPLIT_ARRAYS) -> dict | None:
    """The cached arrays `keys`, or None if absent or stale."""
    if not cache.is_file() or cache.stat().st_mtime < newest:
        return None
    try:
        with np.load(cache) as z:
            if (int(z['image_size']) != image_size
                    or str(z['fingerprint']) != fingerprint
                    or list(z['class_names']) != names):
                return None
            return {k: z[k] for k in keys}
    except (OSError, ValueError, KeyError) as e:
        logging.warning('Ignoring unreadable cache %s: %s', cache, e)
        return None


def write_cache(cache: Path, arrays: dict, image_size: int, fingerprint: str,
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
