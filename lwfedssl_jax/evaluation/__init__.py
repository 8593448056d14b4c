"""Frozen-encoder evaluators: weighted kNN monitor and linear probe.

Every evaluator has the signature
`fn(train_features, train_labels, test_features, test_labels, *, num_classes,
**hyper_parameters) -> float` (top-1 accuracy in [0, 1]) and works on
features produced by `extract_features`.
"""

from lwfedssl_jax.evaluation import knn, linear_probe
from lwfedssl_jax.evaluation.features import extract_features

EVALUATORS = {
    'knn': knn.knn_accuracy,
    'linear_probe': linear_probe.linear_probe_accuracy,
}


def get(name: str):
    """Returns the evaluator registered under `name`.

    Raises:
        ValueError: if `name` is not registered (the message lists choices).
    """
    if name not in EVALUATORS:
        raise ValueError(
            f'Unknown evaluator {name!r}; choose one of {sorted(EVALUATORS)}.')
    return EVALUATORS[name]


__all__ = ['EVALUATORS', 'extract_features', 'get', 'knn', 'linear_probe']
