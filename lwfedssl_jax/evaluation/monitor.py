"""Evaluates an encoder on the labeled splits: kNN monitor + linear probe.

Features are extracted once per evaluation (frozen encoder, no augmentation:
`to_float` only) and shared by both evaluators.
"""

import functools

import jax

from lwfedssl_jax.data.augment import to_float
from lwfedssl_jax.evaluation.features import extract_features
from lwfedssl_jax.evaluation.knn import knn_accuracy
from lwfedssl_jax.evaluation.linear_probe import linear_probe_accuracy
from lwfedssl_jax.models.backbone import Backbone


@functools.lru_cache(maxsize=None)
def _feature_fn(encoder: Backbone, num_blocks: int):
    # One compiled function per (encoder, depth); params are an argument so
    # new weights never trigger a recompile.
    return jax.jit(lambda params, images: encoder.features(
        params, to_float(images), num_blocks))


def evaluate_encoder(encoder: Backbone, params: dict, num_blocks: int,
                     dataset, *, batch_size: int, knn_k: int,
                     knn_temperature: float, probe_epochs: int, probe_lr: float,
                     probe_batch_size: int, probe_weight_decay: float,
                     seed: int) -> dict:
    """kNN and linear-probe top-1 accuracy (in %) of the first `num_blocks`.

    Args:
      encoder: the backbone.
      params: encoder parts (at least `encoder.encoder_parts(num_blocks)`).
      dataset: an `ImageDataset` with train/test images `[N, H, W, 3]` uint8.
    """
    fn = _feature_fn(encoder, num_blocks)
    feats = lambda images: extract_features(
        lambda x: fn(params, x), images, batch_size=batch_size)
    train, test = feats(dataset.train_images), feats(dataset.test_images)
    knn = knn_accuracy(train, dataset.train_labels, test, dataset.test_labels,
                       num_classes=dataset.num_classes, k=knn_k,
                       temperature=knn_temperature)
    probe = linear_probe_accuracy(
        train, dataset.train_labels, test, dataset.test_labels,
        num_classes=dataset.num_classes, epochs=probe_epochs,
        batch_size=probe_batch_size, learning_rate=probe_lr,
        weight_decay=probe_weight_decay, seed=seed)
    return {'knn_top1': 100.0 * knn, 'linear_probe_top1': 100.0 * probe}
