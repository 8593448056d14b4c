"""The partition report: label counts, the split's hash, partition.json and the
Fig. A.10-style PNG, checked against hand-computed values."""

import hashlib
import json
import os

import numpy as np
import pytest

from lwfedssl_jax.data.federated import make_federated_data
from lwfedssl_jax.data.partition_report import (label_histogram, partition_hash,
                                                plot_partition, write_partition_report)

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'

# Three clients over six examples: labels 0 1 2 0 1 1 for indices 0..5.
INDICES = [np.array([5, 0, 2]), np.array([], np.int64), np.array([4, 1, 3])]
LABELS = [np.array([1, 0, 2]), np.array([], np.int32), np.array([1, 1, 0])]
HISTOGRAM = [[1, 1, 1], [0, 0, 0], [1, 2, 0]]
# sha256 of the documented text: clients in order, each one's indices sorted.
TEXT = b'[[0,2,5],[],[1,3,4]]'
DIGEST = 'a29c88a9da90c161b8443f9c3ab8c5fe738d8de812e434108d2ed26974879ea9'


def test_label_histogram_counts_per_client():
    hist = label_histogram(LABELS, 3)
    assert hist.shape == (3, 3)
    np.testing.assert_array_equal(hist, HISTOGRAM)
    np.testing.assert_array_equal(label_histogram([[2, 2]], 4), [[0, 0, 2, 0]])


@pytest.mark.parametrize('labels', [[np.array([0, 3])], [np.array([-1])]])
def test_label_histogram_refuses_labels_out_of_range(labels):
    with pytest.raises(ValueError, match=r'outside \[0, 3\)'):
        label_histogram(labels, 3)


def test_partition_hash_is_the_documented_digest():
    assert hashlib.sha256(TEXT).hexdigest() == DIGEST   # the pinned value itself
    assert partition_hash(INDICES) == DIGEST
    assert partition_hash([[3, 1], [2]]) == hashlib.sha256(b'[[1,3],[2]]').hexdigest()


def test_partition_hash_ignores_order_within_clients_and_integer_width():
    same = [np.array([2, 0, 5], np.int32), [], np.array([4, 3, 1], np.uint16)]
    assert partition_hash(same) == DIGEST
    # Client order, and which client holds an index, both change it.
    assert partition_hash([INDICES[2], INDICES[1], INDICES[0]]) != DIGEST
    assert partition_hash([[0, 2], [5], [1, 3, 4]]) != DIGEST


def test_write_partition_report(tmp_path):
    workdir = str(tmp_path / 'run')
    report = write_partition_report(workdir, INDICES, LABELS, 3)
    with open(os.path.join(workdir, 'partition.json')) as f:
        on_disk = json.load(f)
    expected = {'hash': DIGEST, 'num_clients': 3, 'num_classes': 3, 'sizes': [3, 0, 3],
                'label_histogram': HISTOGRAM}
    assert on_disk == expected and report == expected
    with open(os.path.join(workdir, 'plots', 'partition.png'), 'rb') as f:
        assert f.read(8) == PNG_MAGIC


def test_write_partition_report_refuses_misaligned_inputs(tmp_path):
    with pytest.raises(ValueError, match='3 clients of indices but 2 of labels'):
        write_partition_report(str(tmp_path), INDICES, LABELS[:2], 3)
    with pytest.raises(ValueError, match='client 0: 3 indices but 2 labels'):
        write_partition_report(str(tmp_path), INDICES, [LABELS[0][:2]] + LABELS[1:], 3)


def test_plot_partition_many_classes(tmp_path):
    hist = np.arange(2 * 12).reshape(2, 12)   # tab20 colours, legend kept
    path = plot_partition(hist, str(tmp_path / 'deep' / 'p.png'))
    with open(path, 'rb') as f:
        assert f.read(8) == PNG_MAGIC


def test_report_of_a_federated_split(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 80).astype(np.int32)
    images = np.zeros((80, 2, 2, 3), np.uint8)
    fed = make_federated_data(images, labels, num_clients=5, kind='dirichlet', alpha=0.5,
                              seed=1)
    report = write_partition_report(str(tmp_path), fed.indices, fed.labels, 4)
    hist = np.array(report['label_histogram'])
    # Rows: each client's size; columns: the class counts of the whole set.
    np.testing.assert_array_equal(hist.sum(1), np.asarray(fed.sizes))
    np.testing.assert_array_equal(hist.sum(0), np.bincount(labels, minlength=4))
    for c in range(5):
        np.testing.assert_array_equal(hist[c], np.bincount(labels[fed.indices[c]],
                                                           minlength=4))
    assert report['hash'] == partition_hash(fed.indices)
