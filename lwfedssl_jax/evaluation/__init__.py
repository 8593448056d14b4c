"""Evaluation: protocols on an encoder, and the frozen-feature evaluators.

`PROTOCOLS` (`protocols.py`) is what `eval.protocols` and `python -m
lwfedssl_jax.evaluate --protocol` name: 'knn', 'linear_probe' and
'finetune', each `fn(encoder, params, num_blocks, dataset, settings, seed)
-> {metric: %}`.

`EVALUATORS` are the two frozen-feature classifiers the first two protocols
run, with the signature `fn(train_features, train_labels, test_features,
test_labels, *, num_classes, **hyper_parameters) -> float` (top-1 accuracy
in [0, 1]) on features produced by `extract_features`.
"""

from lwfedssl_jax.evaluation import knn, linear_probe
from lwfedssl_jax.evaluation.features import extract_features
from lwfedssl_jax.evaluation.protocols import PROTOCOLS, run_protocols

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


__all__ = ['EVALUATORS', 'PROTOCOLS', 'extract_features', 'get', 'knn', 'linear_probe',
           'run_protocols']
