"""Classification metrics of the paper's tables, from predicted and true labels.

Paper notes §6: top-1 accuracy (CIFAR-10/100, Tiny ImageNet), mean
per-class accuracy (Caltech-101, MedMNIST) and the macro precision, recall
and F1 of the MedMNIST tables. All in %, computed on host with numpy.

Conventions (scikit-learn's, so numbers compare with `sklearn.metrics`):

* **mean per-class accuracy** = the mean over the classes *present in the
  test labels* of each class's recall (`balanced_accuracy_score`);
* **macro precision / recall / F1** average over the classes present in the
  labels *or* the predictions (`precision_recall_fscore_support(
  average='macro', zero_division=0)`); a class without predictions has
  precision 0, one without test examples recall 0, and F1 is per class,
  `2 tp / (2 tp + fp + fn)`, then averaged.

So macro recall equals mean per-class accuracy unless the classifier
predicts a class that the test split lacks, which is one reading of the
small recall/accuracy gaps in the paper's Table 9.
"""

import numpy as np

METRICS = ('top1', 'mean_per_class', 'macro_precision', 'macro_recall', 'macro_f1')


def classification_metrics(predictions, labels) -> dict:
    """Top-1, mean per-class accuracy and macro precision / recall / F1.

    Args:
        predictions: `[M]` int predicted classes.
        labels: `[M]` int true classes (M >= 1).

    Returns:
        `{name: value in [0, 100]}` for each name of `METRICS`.

    Raises:
        ValueError: on shapes that differ or an empty split.
    """
    predictions = np.asarray(predictions).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f'predictions {predictions.shape} and labels {labels.shape} '
                         'must have the same shape.')
    if labels.size == 0:
        raise ValueError('cannot score an empty test split.')
    classes = np.union1d(labels, predictions)
    pred_i = np.searchsorted(classes, predictions)
    true_i = np.searchsorted(classes, labels)
    count = lambda idx: np.bincount(idx, minlength=len(classes)).astype(float)
    # Per class (of `classes`): true positives, predicted count, true count.
    tp = count(true_i[pred_i == true_i])
    predicted, actual = count(pred_i), count(true_i)

    def ratio(num, den):   # zero_division=0
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    recall = ratio(tp, actual)
    return {
        'top1': 100.0 * float(np.mean(predictions == labels)),
        'mean_per_class': 100.0 * float(np.mean(recall[actual > 0])),
        'macro_precision': 100.0 * float(np.mean(ratio(tp, predicted))),
        'macro_recall': 100.0 * float(np.mean(recall)),
        'macro_f1': 100.0 * float(np.mean(ratio(2 * tp, predicted + actual))),
    }


def prefixed(name: str, predictions, labels) -> dict:
    """`classification_metrics` with keys `<name>_<metric>` (e.g. `knn_top1`)."""
    return {f'{name}_{k}': v for k, v in classification_metrics(predictions, labels).items()}
