"""Tiny files in MedMNIST's published `.npz` format, written on the fly for tests.

No binary file is committed: `write_medmnist(path)` makes one in well under a
second. Class k of a file is a horizontal grating of k + 1 cycles on a
class-dependent mean level (grayscale) or colour (RGB), plus mild noise, so a
class is visible in the pixels and kNN can tell classes apart.

    python -c "import sys; sys.path.insert(0, 'tests/data'); import medmnist_fixture; \
        medmnist_fixture.write_medmnist('/tmp/mm.npz', n=(200, 40, 80))"
"""

from __future__ import annotations

import numpy as np

SPLITS = ('train', 'val', 'test')


def medmnist_arrays(*, size: int = 28, rgb: bool = True, n=(40, 10, 20),
                    num_classes: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """The six arrays of a MedMNIST file (for tests that then damage one).

    Args:
        size: image side H.
        rgb: `[N, H, H, 3]` images if True, else grayscale `[N, H, H]`.
        n: (train, val, test) example counts.
        num_classes: K; each split cycles through the classes (every class
            occurs in a split of at least K examples), then is shuffled.
        seed: seed of the shuffle and the noise.

    Returns:
        `{split}_images` uint8 and `{split}_labels` uint8 `[N, 1]` (MedMNIST's
        label dtype and shape) for split in train, val, test.
    """
    rng = np.random.default_rng(seed)
    rows = np.arange(size)[:, None] / size                       # [H, 1]
    cycles = np.arange(1, num_classes + 1)[:, None, None]        # [K, 1, 1]
    grating = 0.2 * np.sin(2 * np.pi * cycles * rows)            # [K, H, 1]
    grating = np.broadcast_to(grating, (num_classes, size, size))
    if rgb:
        colours = rng.uniform(0.25, 0.75, (num_classes, 1, 1, 3))
        protos = colours + grating[..., None]                    # [K, H, H, 3]
    else:
        levels = np.linspace(0.3, 0.7, num_classes)[:, None, None]
        protos = levels + grating                                # [K, H, H]
    out = {}
    for split, count in zip(SPLITS, n):
        labels = rng.permutation(np.arange(count) % num_classes)
        x = protos[labels] + rng.normal(0.0, 0.03, (count,) + protos.shape[1:])
        out[f'{split}_images'] = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
        out[f'{split}_labels'] = labels.astype(np.uint8)[:, None]
    return out


def write_medmnist(path, *, size: int = 28, rgb: bool = True, n=(40, 10, 20),
                   num_classes: int = 4, seed: int = 0, **replace) -> str:
    """Writes a MedMNIST-format `.npz` at exactly `path` (no suffix added).

    Args:
        path: the file to write.
        size, rgb, n, num_classes, seed: as `medmnist_arrays`.
        **replace: arrays to put in place of (or beside) the generated ones,
            e.g. `train_labels=np.zeros((40, 14), np.uint8)`; a value of None
            drops that key.

    Returns:
        `str(path)`.
    """
    arrays = medmnist_arrays(size=size, rgb=rgb, n=n, num_classes=num_classes, seed=seed)
    arrays.update(replace)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    with open(path, 'wb') as f:   # A file object: savez adds no '.npz'.
        np.savez_compressed(f, **arrays)
    return str(path)
