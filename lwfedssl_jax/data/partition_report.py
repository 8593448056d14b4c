"""What the federated split looks like: per-client label counts, a hash, a plot.

The paper shows its Dirichlet(beta = 5) MedMNIST split as per-client stacked
bars of class counts (Fig. A.10, paper notes §4.5); `plot_partition` draws
the same figure for a run, and `partition.json` records the counts and a hash
of the split, so two runs (or two machines) can be checked to have trained
on the same partition without comparing index files.

Example:
    >>> fed = make_federated_data(images, labels, num_clients=10,
    ...                           kind='dirichlet', alpha=5.0, seed=0)
    >>> write_partition_report(workdir, fed.indices, fed.labels, num_classes)
    {'hash': '3f1a...', 'num_clients': 10, 'num_classes': 8, ...}
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Sequence

import numpy as np

REPORT_FILE = 'partition.json'
PLOT_FILE = os.path.join('plots', 'partition.png')


def label_histogram(client_labels: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """Counts each client's examples per class.

    Args:
        client_labels: N arrays, client c's `[n_c]` int labels in
            [0, num_classes).
        num_classes: C.

    Returns:
        `[N, C]` int64; row c sums to n_c.

    Raises:
        ValueError: a label outside [0, num_classes).
    """
    rows = []
    for c, labels in enumerate(client_labels):
        labels = np.asarray(labels).reshape(-1).astype(np.int64)
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f'client {c} has labels in [{labels.min()}, {labels.max()}], '
                             f'outside [0, {num_classes}).')
        rows.append(np.bincount(labels, minlength=num_classes))
    return np.stack(rows) if rows else np.zeros((0, num_classes), np.int64)


def partition_hash(client_indices: Sequence[np.ndarray]) -> str:
    """A fingerprint of which examples each client holds.

    Exactly: the sha256 hex digest of the UTF-8 bytes of the JSON text
    `[[i, ...], [j, ...], ...]` with no spaces: one list per client, in client
    order, of that client's indices as decimal ints in ascending order. So::

        partition_hash([[3, 1], [2]]) == sha256(b'[[1,3],[2]]').hexdigest()

    Within-client order is ignored (sorted) because it does not change what a
    client trains on; client order is kept because client c is an identity
    (its seed stream, its row in the plots). Text, not array bytes, so the
    digest does not depend on integer width or byte order.

    Args:
        client_indices: N sequences of non-negative ints.

    Returns:
        64 lowercase hex characters.
    """
    lists = [sorted(int(i) for i in np.asarray(idx).reshape(-1)) for idx in client_indices]
    text = json.dumps(lists, separators=(',', ':'))
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def plot_partition(histogram: np.ndarray, path: str) -> str:
    """Writes per-client stacked bars of class counts as a PNG (paper Fig. A.10).

    Args:
        histogram: `[N, C]` counts (`label_histogram`).
        path: the PNG to write (its directory is created).

    Returns:
        `path`.
    """
    import matplotlib
    matplotlib.use('Agg')   # Here, not at import: importing this module stays free.
    import matplotlib.pyplot as plt

    histogram = np.asarray(histogram)
    num_clients, num_classes = histogram.shape
    # tab10 matches the other plots' colours; tab20 keeps up to 20 classes distinct.
    cmap = plt.get_cmap('tab10' if num_classes <= 10 else 'tab20')
    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * num_clients + 2), 4))
    bottom = np.zeros(num_clients)
    for k in range(num_classes):
        ax.bar(np.arange(num_clients), histogram[:, k], bottom=bottom,
               color=cmap(k % cmap.N), label=f'class {k}', width=0.8)
        bottom += histogram[:, k]
    ax.set_xlabel('client')
    ax.set_ylabel('examples')
    ax.set_xticks(np.arange(num_clients))
    ax.set_title(f'Label distribution over {num_clients} clients')
    if num_classes <= 20:   # A longer legend would hide the bars.
        ax.legend(fontsize='small', bbox_to_anchor=(1.01, 1), loc='upper left')
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_partition_report(workdir: str, client_indices: Sequence[np.ndarray],
                           client_labels: Sequence[np.ndarray], num_classes: int) -> dict:
    """Writes `<workdir>/partition.json` and `<workdir>/plots/partition.png`.

    Args:
        workdir: the run directory (created if needed).
        client_indices: N arrays of indices into the training set
            (`FederatedData.indices`).
        client_labels: N label arrays aligned with `client_indices`
            (`FederatedData.labels`).
        num_classes: C.

    Returns:
        The JSON's content: `hash` (`partition_hash`), `num_clients`,
        `num_classes`, `sizes` (N ints) and `label_histogram` (N lists of C ints).

    Raises:
        ValueError: client counts or per-client lengths of indices and labels
            differ, or a label is outside [0, num_classes).
    """
    if len(client_indices) != len(client_labels):
        raise ValueError(f'{len(client_indices)} clients of indices but '
                         f'{len(client_labels)} of labels.')
    for c, (idx, lab) in enumerate(zip(client_indices, client_labels)):
        if np.size(idx) != np.size(lab):
            raise ValueError(f'client {c}: {np.size(idx)} indices but {np.size(lab)} labels.')
    histogram = label_histogram(client_labels, num_classes)
    report = {
        'hash': partition_hash(client_indices),
        'num_clients': len(client_indices),
        'num_classes': int(num_classes),
        'sizes': [int(np.size(idx)) for idx in client_indices],
        'label_histogram': histogram.tolist(),
    }
    os.makedirs(workdir, exist_ok=True)
    # One key per line, values compact: json's indent= would put every count
    # of the [N, C] histogram on a line of its own.
    body = ',\n'.join(f'  {json.dumps(k)}: {json.dumps(v)}' for k, v in report.items())
    with open(os.path.join(workdir, REPORT_FILE), 'w') as f:
        f.write('{\n' + body + '\n}\n')
    plot_partition(histogram, os.path.join(workdir, PLOT_FILE))
    return report
