"""Frozen-encoder feature extraction and shared input checks for the evaluators.

The evaluators (kNN monitor, linear probe) never touch the encoder: they take
plain `[N, D]` feature matrices. This module turns an image array into such a
matrix by running a caller-supplied jitted `feature_fn` batch by batch, and
holds the input validation that both evaluators share.
"""

from typing import Callable

import numpy as np
from tqdm.auto import tqdm

FeatureFn = Callable[[np.ndarray], np.ndarray]


def extract_features(feature_fn: FeatureFn, images: np.ndarray, *,
                     batch_size: int = 256,
                     progress: bool = False) -> np.ndarray:
    """Runs `feature_fn` over `images` in fixed-size batches.

    Every call of `feature_fn` sees exactly `[batch_size, H, W, 3]`: the last
    batch is zero-padded and the padded rows are dropped afterwards, so a
    jitted `feature_fn` compiles once, whatever `N` is (train and test sets
    of different sizes share the compiled executable). This requires
    `feature_fn` to treat examples independently (e.g. LayerNorm, or
    BatchNorm in inference mode); a function that mixes statistics across
    the batch would see the padding.

    Args:
        feature_fn: jitted `[b, H, W, 3] uint8 -> [b, D] float` function.
        images: `[N, H, W, 3] uint8` images.
        batch_size: rows per `feature_fn` call (must be >= 1).
        progress: show a tqdm bar over batches.

    Returns:
        `[N, D] float32` numpy features, in the order of `images`.

    Raises:
        ValueError: on a non-`[N, H, W, 3]` or non-uint8 `images`, a
            non-positive `batch_size`, or a `feature_fn` whose output is not
            `[batch_size, D]`.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f'images must be [N, H, W, 3], got shape {images.shape}; add a '
            'batch axis or convert grayscale/RGBA images to RGB first.')
    if images.dtype != np.uint8:
        raise ValueError(
            f'images must be uint8 (raw pixels), got {images.dtype}; pass the '
            'un-normalised images, feature_fn does its own normalisation.')
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f'batch_size must be a positive int, got {batch_size!r}.')
    batch_size = int(batch_size)

    num = images.shape[0]
    # Even an empty input runs one (all-padding) batch: it is the only way to
    # learn D, so the result is a well-shaped [0, D] array.
    num_batches = max(-(-num // batch_size), 1)
    outputs = []
    pending = None  # Device result of the previous batch, fetched one step late.
    for i in tqdm(range(num_batches), disable=not progress, desc='features',
                  unit='batch'):
        batch = images[i * batch_size:(i + 1) * batch_size]
        valid = batch.shape[0]
        if valid < batch_size:
            pad = np.zeros((batch_size - valid,) + images.shape[1:], np.uint8)
            batch = np.concatenate([batch, pad], axis=0)
        result = feature_fn(batch)
        # Converting the previous batch only after dispatching this one lets
        # the device compute batch i while the host copies batch i - 1.
        if pending is not None:
            outputs.append(_to_host(*pending, batch_size))
        pending = (result, valid)
    outputs.append(_to_host(*pending, batch_size))
    return np.concatenate(outputs, axis=0)


def _to_host(result, valid: int, batch_size: int) -> np.ndarray:
    """Copies one `[batch_size, D]` output to host and drops the padding."""
    result = np.asarray(result)
    if result.ndim != 2 or result.shape[0] != batch_size:
        raise ValueError(
            f'feature_fn must return [batch_size, D] = [{batch_size}, D], got '
            f'shape {result.shape}; pool or flatten the encoder output to one '
            'vector per image.')
    return result[:valid].astype(np.float32, copy=False)


def check_labeled_features(train_features, train_labels, test_features,
                           test_labels, num_classes: int):
    """Validates and converts a train/test feature split for the evaluators.

    Args:
        train_features: `[N, D]` numeric array.
        train_labels: `[N]` integer labels in `[0, num_classes)`.
        test_features: `[M, D]` numeric array.
        test_labels: `[M]` integer labels in `[0, num_classes)`.
        num_classes: number of classes C (>= 1).

    Returns:
        `(train_features [N, D] float32, train_labels [N] int32,
        test_features [M, D] float32, test_labels [M] int32)` numpy arrays.

    Raises:
        ValueError: naming the offending argument and how to fix it.
    """
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f'num_classes must be a positive int, got {num_classes!r}.')
    out = []
    for split, feats, labels in (('train', train_features, train_labels),
                                 ('test', test_features, test_labels)):
        feats = np.asarray(feats)
        labels = np.asarray(labels)
        if feats.ndim != 2:
            raise ValueError(
                f'{split}_features must be [N, D], got shape {feats.shape}; '
                'flatten or pool to one vector per example.')
        if feats.shape[0] == 0:
            raise ValueError(f'{split}_features is empty; need at least one example.')
        if not (np.issubdtype(feats.dtype, np.floating)
                or np.issubdtype(feats.dtype, np.integer)):
            raise ValueError(f'{split}_features must be numeric, got {feats.dtype}.')
        feats = feats.astype(np.float32, copy=False)
        if not np.all(np.isfinite(feats)):
            raise ValueError(
                f'{split}_features contain NaN or inf (did the encoder diverge?); '
                'evaluate a finite checkpoint.')
        if labels.shape != (feats.shape[0],):
            raise ValueError(
                f'{split}_labels must be [N] = [{feats.shape[0]}] to match '
                f'{split}_features, got shape {labels.shape}.')
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f'{split}_labels must be integers, got {labels.dtype}; convert '
                'with .astype(np.int32) (one-hot labels: take argmax first).')
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(
                f'{split}_labels must lie in [0, num_classes) = [0, {num_classes}), '
                f'got range [{labels.min()}, {labels.max()}]; fix num_classes or '
                'remap the labels.')
        out += [feats, labels.astype(np.int32)]
    if out[0].shape[1] != out[2].shape[1]:
        raise ValueError(
            f'train_features have D={out[0].shape[1]} but test_features have '
            f'D={out[2].shape[1]}; extract both with the same encoder.')
    return tuple(out)
