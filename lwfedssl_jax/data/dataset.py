"""The in-memory dataset type and helpers shared by the ``sources`` loaders."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image

# Progress bars only for loads that take noticeable time.
_PROGRESS_MIN = 2000


class ImageDataset(NamedTuple):
    """A train/test (and optionally validation) image dataset in host memory,
    labelled unless it comes from a pre-training-only source (``labelled``).

    Attributes:
        name: the ``source`` string it was loaded from.
        train_images: [N, H, W, 3] uint8.
        train_labels: [N] int32 in [0, num_classes), or None (unlabelled).
        test_images: [M, H, W, 3] uint8.
        test_labels: [M] int32, or None (unlabelled; M = 0).
        num_classes: number of classes.
        val_images: [V, H, W, 3] uint8, or None for sources without a
            validation split. Last and defaulted, so the six-field
            positional construction of every other source still works.
            MedMNIST's val split is the paper's downstream fine-tuning set
            (paper notes §4.5).
        val_labels: [V] int32, or None (with ``val_images``).
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray | None
    test_images: np.ndarray
    test_labels: np.ndarray | None
    num_classes: int
    val_images: np.ndarray | None = None
    val_labels: np.ndarray | None = None

    @property
    def labelled(self) -> bool:
        """False for a pre-training-only source (``images:``, a tfds dataset
        without a ``label`` feature): its labels are None, its test split is
        empty and ``num_classes`` is 0."""
        return self.train_labels is not None


def unlabelled(source: str, images: np.ndarray) -> ImageDataset:
    """A dataset of training images only (``[N, S, S, 3]`` uint8), for
    self-supervised pre-training; evaluation then needs ``eval.datasets``."""
    return ImageDataset(source, images, None, images[:0], None, 0)


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
