"""The ``images:<path>`` source: every image under a folder, without labels.

For self-supervised pre-training on data that has no labels (the paper
pre-trains on unlabeled COCO images, paper notes §4.1): ``<path>`` is
searched recursively for ``.jpg`` / ``.jpeg`` / ``.png`` files (hidden
folders skipped), read in sorted relative-path order, resized to S x S and
cached as ``.npz`` like ``folder:``. The dataset has no labels and no test
split (``ImageDataset.labelled`` is False): evaluation then reads the
labelled sources of ``eval.datasets``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from lwfedssl_jax.data.dataset import ImageDataset, _Request, unlabelled
from lwfedssl_jax.data.folder_source import (IMAGE_SUFFIXES, cache_path, decode_files,
                                             read_cache, write_cache)
from lwfedssl_jax.errors import ConfigError


def images_path_problem(arg: str) -> str | None:
    """What is wrong with the path of ``images:<arg>``, or None."""
    if not arg:
        return "images: needs a folder, e.g. 'images:/data/coco/train2017'."
    if not Path(arg).expanduser().is_dir():
        return f'{Path(arg).expanduser()} is not a directory.'
    return None


def list_images(root: Path) -> tuple[list[Path], float, str]:
    """Image files under `root` (recursive, sorted by relative path), the
    newest mtime seen, and a fingerprint of the (relative path, size) list."""
    files, newest, digest = [], root.stat().st_mtime, hashlib.sha1()
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
        newest = max(newest, os.stat(folder).st_mtime)
        for name in sorted(names):
            if name.lower().endswith(IMAGE_SUFFIXES):
                path = Path(folder) / name
                st = path.stat()
                newest = max(newest, st.st_mtime)
                files.append(path)
                digest.update(f'{path.relative_to(root)}:{st.st_size}\n'.encode())
    return files, newest, digest.hexdigest()


def _load_images(req: _Request) -> ImageDataset:
    problem = images_path_problem(req.arg)
    if problem:
        raise ConfigError('data.source', req.source, problem)
    root = Path(req.arg).expanduser()
    files, newest, fingerprint = list_images(root)
    if not files:
        raise ConfigError('data.source', req.source, f'no .jpg/.jpeg/.png file under {root}.')
    cache = cache_path(root, req.cache_dir, req.image_size, kind='-unlabelled')
    arrays = read_cache(cache, req.image_size, fingerprint, [], newest,
                        keys=('train_images',))
    if arrays is None:
        arrays = {'train_images': decode_files(files, req.image_size, 'decoding images')}
        write_cache(cache, arrays, req.image_size, fingerprint, [])
    return unlabelled(req.source, arrays['train_images'])
