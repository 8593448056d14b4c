"""The ``medmnist:<path>`` source: one MedMNIST(+) ``.npz`` file (paper notes §4.5).

LW-FedSSL's Tables 9-13 pretrain on the train split of PathMNIST, BloodMNIST,
DermaMNIST and OrganAMNIST at 64x64 (MedMNIST+ size variants), fine-tune on
the val split and evaluate on the test split. Nothing is downloaded here: the
source reads the file that MedMNIST publishes (e.g. ``bloodmnist_64.npz``),
whose keys are ``{train,val,test}_images`` (uint8 ``[N, H, W]`` grayscale or
``[N, H, W, 3]`` RGB, H = W in 28, 64, 128, 224) and ``{train,val,test}_labels``
(int ``[N, 1]``).

Example:
    >>> ds = load_dataset('medmnist:data/bloodmnist_64.npz', image_size=64)
    >>> ds.train_images.shape, ds.val_images.shape, ds.num_classes
    ((11959, 64, 64, 3), (1712, 64, 64, 3), 8)
"""

from __future__ import annotations

import logging
import os
import zipfile
import zlib

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from lwfedssl_jax.data.dataset import (_PROGRESS_MIN, ImageDataset, _Request,
                                       _to_rgb)
from lwfedssl_jax.errors import ConfigError

SPLITS = ('train', 'val', 'test')
REQUIRED_KEYS = tuple(f'{s}_{part}' for s in SPLITS for part in ('images', 'labels'))
_WHERE = ('MedMNIST+ files (e.g. bloodmnist_64.npz) come from doi.org/10.5281/zenodo.10519652 or '
          "`pip install medmnist` then medmnist.BloodMNIST(split='train', size=64, "
          'download=True), on a machine with internet; copy the .npz here.')


def medmnist_path_problem(arg: str) -> str | None:
    """What is wrong with the path of ``medmnist:<arg>``, or None.

    Shared by the loader and ``validation._source_errors``, so the static
    check and the load refuse the same paths with the same words.
    """
    if not arg:
        return "the medmnist source needs a path, e.g. 'medmnist:data/bloodmnist_64.npz'."
    path = os.path.expanduser(arg)
    if not path.lower().endswith('.npz'):
        return f'{path} is not a .npz file; the medmnist source reads MedMNIST\'s .npz files.'
    if not os.path.isfile(path):
        return f'{path} does not exist (or is not a file). {_WHERE}'
    return None


def _read(req: _Request) -> dict[str, np.ndarray]:
    """The six arrays of the file, each decompressed once."""
    path = os.path.expanduser(req.arg)

    def unreadable(e: Exception) -> ConfigError:
        return ConfigError('data.source', req.source, f'{path} is not a readable .npz '
                           f'archive of plain arrays ({type(e).__name__}: {e}).')

    try:
        # allow_pickle=False: MedMNIST's arrays are plain, and a pickled
        # object array in a downloaded file would run code on load.
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise unreadable(e) from None
    if not isinstance(z, np.lib.npyio.NpzFile):  # A lone .npy array, renamed.
        raise unreadable(TypeError(f'one array {list(z.shape)}, not named arrays'))
    with z:
        missing = [k for k in REQUIRED_KEYS if k not in z.files]
        if missing:
            raise ConfigError('data.source', req.source,
                              f'{path} lacks keys {missing}; it has {sorted(z.files)}, and '
                              f'a MedMNIST file has {list(REQUIRED_KEYS)}.')
        try:
            return {k: z[k] for k in REQUIRED_KEYS}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise unreadable(e) from None


def _check_split(req: _Request, split: str, images: np.ndarray,
                 labels: np.ndarray) -> np.ndarray:
    """Validates one split and returns its labels as [N] int32."""
    def refuse(problem):
        raise ConfigError('data.source', req.source, f'{split} split: {problem}')

    if images.dtype != np.uint8:
        refuse(f'images have dtype {images.dtype}; MedMNIST images are uint8.')
    gray = images.ndim == 3
    if not (gray or (images.ndim == 4 and images.shape[-1] == 3)) or (
            images.shape[1] != images.shape[2]):
        refuse(f'images have shape {list(images.shape)}; expected square [N, H, H] '
               '(grayscale) or [N, H, H, 3] (RGB).')
    if not np.issubdtype(labels.dtype, np.integer):
        refuse(f'labels have dtype {labels.dtype}; expected integers.')
    if labels.ndim == 2 and labels.shape[1] > 1:
        refuse(f'labels have shape {list(labels.shape)}: a multi-label set (such as '
               'ChestMNIST, 14 labels per image). This engine evaluates single-label '
               'classification (kNN, linear probe); use a multi-class set such as '
               'PathMNIST, BloodMNIST, DermaMNIST or OrganAMNIST.')
    if labels.ndim not in (1, 2):
        refuse(f'labels have shape {list(labels.shape)}; expected [N, 1] or [N].')
    labels = labels.reshape(-1)
    if len(labels) != len(images):
        refuse(f'{len(images)} images but {len(labels)} labels.')
    if len(labels) and labels.min() < 0:
        refuse(f'labels include {labels.min()}; class ids start at 0.')
    if split != 'val' and not len(labels):
        refuse('is empty; pretraining needs train images and evaluation test images.')
    return labels.astype(np.int32)


def _to_size(images: np.ndarray, size: int, desc: str) -> np.ndarray:
    """[N, H, H] or [N, H, H, 3] uint8 -> [N, size, size, 3] uint8."""
    if images.shape[1] == size:
        # Same result as PIL's 'L' -> 'RGB' (channel copies), without a loop.
        return images if images.ndim == 4 else np.repeat(images[..., None], 3, axis=-1)
    out = np.empty((len(images), size, size, 3), np.uint8)
    for i, img in enumerate(tqdm(images, desc=desc, unit='img',
                                 disable=len(images) < _PROGRESS_MIN)):
        out[i] = _to_rgb(Image.fromarray(img), size)  # The other sources' resize.
    return out


def _load_medmnist(req: _Request) -> ImageDataset:
    """Loads ``medmnist:<path>`` (see the module docstring).

    ``num_classes`` is the largest label of any split plus one: the file holds
    no class list (MedMNIST keeps it in its Python package's INFO table). For
    every published multi-class MedMNIST set each class occurs in the train
    split, so this equals the published count; a class id missing from the
    train split (a subsampled file) is logged as a warning.

    Raises:
        ConfigError: (key ``data.source``) a path that is not an existing
            ``.npz``, an unreadable archive, missing keys, non-uint8 or
            non-square images, non-integer, negative or multi-label labels,
            image/label counts that differ, an empty train or test split.
    """
    problem = medmnist_path_problem(req.arg)
    if problem:
        raise ConfigError('data.source', req.source, problem)
    arrays = _read(req)
    labels = {s: _check_split(req, s, arrays[f'{s}_images'], arrays[f'{s}_labels'])
              for s in SPLITS}
    num_classes = int(max(lab.max() for lab in labels.values() if len(lab))) + 1
    absent = np.setdiff1d(np.arange(num_classes), labels['train'])
    if len(absent):
        logging.warning('%s: classes %s never occur in the train split (of %d classes).',
                        req.source, absent.tolist(), num_classes)
    images = {s: _to_size(arrays[f'{s}_images'], req.image_size, f'resizing {s}')
              for s in SPLITS}
    return ImageDataset(req.source, images['train'], labels['train'], images['test'],
                        labels['test'], num_classes, val_images=images['val'],
                        val_labels=labels['val'])
