"""The evaluation that training runs at stage ends and at the end (and that
`evaluate --workdir` repeats): `eval.protocols` on the evaluation datasets,
as one flat dict of metrics (`summary.json`, `metrics.jsonl`, TensorBoard).

Key names: on the pre-training data (`eval.datasets` empty, the default)
the protocols' own keys, `knn_top1`, `linear_probe_top1`, ...; on the
datasets of `eval.datasets`, the same keys prefixed by each source's short
name (`protocols.short_name`): `cifar100/knn_top1`, `caltech101/
finetune_mean_per_class`, ...
"""

from typing import Callable

from lwfedssl_jax.errors import ConfigError
from lwfedssl_jax.evaluation.protocols import check_labelled, run_protocols, short_name
from lwfedssl_jax.models.backbone import Backbone


def eval_datasets(sources, pretraining, load: Callable) -> dict:
    """The datasets to evaluate on, keyed by their metric-key prefix.

    Args:
      sources: `eval.datasets` (source strings); empty = the pre-training data.
      pretraining: the pre-training `ImageDataset` (labelled when used).
      load: `load(source) -> ImageDataset`.

    Returns:
      `{'': pretraining}` or `{short_name(source): dataset}` in `sources` order.

    Raises:
      ConfigError: a dataset without labels, or two sources with one short name.
    """
    if not sources:
        check_labelled(pretraining, 'eval.datasets')
        return {'': pretraining}
    names = [short_name(s) for s in sources]
    if len(set(names)) != len(names):
        raise ConfigError('eval.datasets', tuple(sources), f'two sources share a short '
                          f'name ({names}), so their metric keys would collide.')
    out = {}
    for name, source in zip(names, sources):
        out[name] = load(source)
        check_labelled(out[name], 'eval.datasets')
    return out


def evaluate_encoder(encoder: Backbone, params: dict, num_blocks: int, datasets: dict, *,
                     protocols, settings, seed: int) -> dict:
    """Metrics (in %) of the first `num_blocks` blocks under each protocol.

    Args:
      encoder: the backbone.
      params: encoder parts (at least `encoder.encoder_parts(num_blocks)`).
      num_blocks: blocks to evaluate.
      datasets: `eval_datasets(...)`: `{prefix: ImageDataset}` with
        train/test images `[N, H, W, 3]` uint8 and labels.
      protocols: names in `protocols.PROTOCOLS`.
      settings: the `config.eval` block (dict).
      seed: the protocols' seed.

    Returns:
      `{key: value}`, keys prefixed `<prefix>/` for a non-empty prefix.
    """
    out = {}
    for prefix, dataset in datasets.items():
        result = run_protocols(protocols, encoder, params, num_blocks, dataset, settings,
                               seed)
        out.update({f'{prefix}/{k}' if prefix else k: v for k, v in result.items()})
    return out
