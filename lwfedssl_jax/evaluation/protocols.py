"""Evaluation protocols: what `eval.protocols` and `evaluate --protocol` name.

Every entry of `PROTOCOLS` is

    fn(encoder, params, num_blocks, dataset, settings, seed, *, cache=None)
        -> {'<name>_top1': %, '<name>_mean_per_class': %, '<name>_macro_precision': %,
            '<name>_macro_recall': %, '<name>_macro_f1': %}

on a labelled `ImageDataset` (train split to fit, test split to score;
metrics in `metrics.py`), with `settings` the `config.eval` block (a dict
or ConfigDict) and `seed` all of its randomness:

* `knn`: weighted cosine kNN on frozen features (`knn.py`);
* `linear_probe`: softmax regression on frozen features (`linear_probe.py`);
* `finetune`: the paper's protocol, encoder + linear head trained end to
  end with RandAugment (`finetune.py`); minutes per dataset, so not a
  stage-end default.

The frozen-feature protocols share one feature extraction: `run_protocols`
passes them a `cache` dict, in which the first stores the features and the
next reads them (`knn_top1` and `linear_probe_top1` are what training
always reported, computed the same way).
"""

import functools
import os

import jax

from lwfedssl_jax.data.augment import to_float
from lwfedssl_jax.errors import ConfigError, did_you_mean
from lwfedssl_jax.evaluation.features import extract_features
from lwfedssl_jax.evaluation.finetune import FinetuneSettings, finetune_predict
from lwfedssl_jax.evaluation.knn import knn_predict
from lwfedssl_jax.evaluation.linear_probe import linear_probe_predict
from lwfedssl_jax.evaluation.metrics import prefixed


def check_labelled(dataset, key: str = 'eval.datasets') -> None:
    """Raises `ConfigError` (named `key`) unless `dataset` has labelled,
    non-empty train and test splits."""
    name = getattr(dataset, 'name', '?')
    labels = [getattr(dataset, f, None) for f in ('train_labels', 'test_labels')]
    images = [getattr(dataset, f, None) for f in ('train_images', 'test_images')]
    if (any(x is None for x in labels + images) or not getattr(dataset, 'num_classes', 0)
            or any(len(x) == 0 for x in labels + images)):
        raise ConfigError(key, name, 'has no labels (or no test split): every evaluation '
                          'protocol fits on labelled train images and scores labelled '
                          'test images.', 'name labelled sources in eval.datasets (e.g. '
                          "('tfds:cifar10',)) or evaluate --dataset SOURCE.")


@functools.lru_cache(maxsize=None)
def _feature_fn(encoder, num_blocks: int):
    # One compiled function per (encoder, depth); params are an argument so
    # new weights never trigger a recompile.
    return jax.jit(lambda params, images: encoder.features(
        params, to_float(images), num_blocks))


def frozen_features(encoder, params, num_blocks, dataset, batch_size: int,
                    cache: dict | None = None):
    """`(train [N, D], test [M, D])` float32 features of the frozen encoder
    (no augmentation), from `cache` when an earlier protocol stored them."""
    if cache is not None and ('features', batch_size) in cache:
        return cache['features', batch_size]
    fn = _feature_fn(encoder, num_blocks)
    feats = tuple(extract_features(lambda x: fn(params, x), images, batch_size=batch_size)
                  for images in (dataset.train_images, dataset.test_images))
    if cache is not None:
        cache['features', batch_size] = feats
    return feats


def knn(encoder, params, num_blocks, dataset, settings, seed, *, cache=None) -> dict:
    """Weighted kNN (`eval.knn_k`, `eval.knn_temperature`) on frozen features."""
    del seed   # no randomness
    check_labelled(dataset)
    train, test = frozen_features(encoder, params, num_blocks, dataset,
                                  settings['batch_size'], cache)
    preds = knn_predict(train, dataset.train_labels, test, num_classes=dataset.num_classes,
                        k=settings['knn_k'], temperature=settings['knn_temperature'])
    return prefixed('knn', preds, dataset.test_labels)


def linear_probe(encoder, params, num_blocks, dataset, settings, seed, *,
                 cache=None) -> dict:
    """Linear probe (`eval.probe_*`) on frozen features."""
    check_labelled(dataset)
    train, test = frozen_features(encoder, params, num_blocks, dataset,
                                  settings['batch_size'], cache)
    preds = linear_probe_predict(
        train, dataset.train_labels, test, num_classes=dataset.num_classes,
        epochs=settings['probe_epochs'], batch_size=settings['probe_batch_size'],
        learning_rate=settings['probe_lr'], weight_decay=settings['probe_weight_decay'],
        seed=seed)
    return prefixed('linear_probe', preds, dataset.test_labels)


def finetune(encoder, params, num_blocks, dataset, settings, seed, *, cache=None) -> dict:
    """Full fine-tuning (`eval.finetune.*`); frozen features do not apply."""
    del cache
    check_labelled(dataset)
    s = FinetuneSettings(**dict(settings['finetune']))
    if s.train_subset > len(dataset.train_labels):
        raise ConfigError('eval.finetune.train_subset', s.train_subset,
                          f'exceeds the {len(dataset.train_labels)} training images of '
                          f'{dataset.name}; use at most that, or 0 for all.')
    preds = finetune_predict(
        encoder, params, num_blocks, dataset.train_images, dataset.train_labels,
        dataset.test_images, num_classes=dataset.num_classes, settings=s, seed=seed,
        predict_batch_size=settings['batch_size'], name=short_name(dataset.name))
    return prefixed('finetune', preds, dataset.test_labels)


PROTOCOLS = {'knn': knn, 'linear_probe': linear_probe, 'finetune': finetune}


def get(name: str):
    """The protocol registered under `name`.

    Raises:
        ConfigError: (key `eval.protocols`) listing the choices.
    """
    if name not in PROTOCOLS:
        raise ConfigError('eval.protocols', name, f'unknown protocol; choices: '
                          f'{list(PROTOCOLS)}.' + did_you_mean(name, PROTOCOLS))
    return PROTOCOLS[name]


def run_protocols(names, encoder, params, num_blocks, dataset, settings, seed) -> dict:
    """The metrics of each protocol of `names` on `dataset`, merged (the
    frozen-feature protocols extract features once)."""
    cache, out = {}, {}
    for name in names:
        out.update(get(name)(encoder, params, num_blocks, dataset, settings, seed,
                             cache=cache))
    return out


def short_name(source: str) -> str:
    """A source string's name in metric keys: `tfds:cifar100` -> `cifar100`,
    `folder:/data/caltech101/` -> `caltech101`, `medmnist:x/path_64.npz`
    -> `path_64`, `digits` -> `digits` (`/` and `:` become `_`)."""
    kind, _, arg = source.partition(':')
    if not arg:
        name = kind
    elif kind == 'tfds':
        name = arg
    else:
        name = os.path.splitext(os.path.basename(os.path.normpath(arg)))[0]
    return name.replace('/', '_').replace(':', '_')
