"""Weighted cosine k-nearest-neighbour monitor (InstDisc / DINO style).

Each test feature votes with its `k` most cosine-similar train features; a
neighbour with similarity `s` adds `exp(s / temperature)` to its class, and
the class with the largest total wins. No training, so it is the cheap
"is the representation improving?" signal used during pre-training.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lwfedssl_jax.evaluation.features import check_labeled_features


def knn_predict(train_features, train_labels, test_features, *,
                num_classes: int, k: int = 20, temperature: float = 0.07,
                chunk_size: int = 1024) -> np.ndarray:
    """Predicts test labels with the weighted cosine kNN vote.

    Args:
        train_features: `[N, D]` float features of the labelled bank.
        train_labels: `[N]` int labels in `[0, num_classes)`.
        test_features: `[M, D]` float features to classify.
        num_classes: number of classes C.
        k: neighbours per test point, `1 <= k <= N`.
        temperature: softmax-style temperature (> 0); small values make the
            vote approach plain 1-NN, large values a uniform k-NN vote.
        chunk_size: test points per similarity block; peak memory is about
            `chunk_size * N` floats.

    Returns:
        `[M] int32` predicted labels.

    Raises:
        ValueError: on shape/label problems, `k` outside `[1, N]`, or a
            non-positive `temperature` or `chunk_size`.
    """
    # knn_predict has no test labels; all-zero stand-ins pass validation.
    dummy = np.zeros(np.shape(test_features)[:1], np.int32)
    train_x, train_y, test_x, _ = check_labeled_features(
        train_features, train_labels, test_features, dummy, num_classes)
    return _predict(train_x, train_y, test_x, num_classes, k, temperature,
                    chunk_size)


def knn_accuracy(train_features, train_labels, test_features, test_labels, *,
                 num_classes: int, k: int = 20, temperature: float = 0.07,
                 chunk_size: int = 1024) -> float:
    """Top-1 accuracy of the weighted cosine kNN classifier.

    Args:
        train_features: `[N, D]` float features of the labelled bank.
        train_labels: `[N]` int labels in `[0, num_classes)`.
        test_features: `[M, D]` float features.
        test_labels: `[M]` int labels in `[0, num_classes)`.
        num_classes: number of classes C.
        k: neighbours per test point, `1 <= k <= N`.
        temperature: vote temperature (> 0).
        chunk_size: test points per similarity block.

    Returns:
        Fraction of test points whose predicted label is correct, in [0, 1].

    Raises:
        ValueError: see `knn_predict`; also for bad `test_labels`.
    """
    train_x, train_y, test_x, test_y = check_labeled_features(
        train_features, train_labels, test_features, test_labels, num_classes)
    preds = _predict(train_x, train_y, test_x, num_classes, k, temperature,
                     chunk_size)
    return float(np.mean(preds == test_y))


def _predict(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
             num_classes: int, k: int, temperature: float,
             chunk_size: int) -> np.ndarray:
    """Checks the kNN hyper-parameters and runs the vote on validated arrays."""
    num_train = train_x.shape[0]
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= num_train:
        raise ValueError(
            f'k must be an int in [1, N_train] = [1, {num_train}], got {k!r}; '
            'lower k or use a larger train bank.')
    if not temperature > 0:
        raise ValueError(f'temperature must be > 0, got {temperature!r}.')
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f'chunk_size must be a positive int, got {chunk_size!r}.')

    num_test = test_x.shape[0]
    # Never use a chunk larger than the test set, then pad to a whole number
    # of chunks so one compiled lax.map covers every chunk.
    chunk = min(int(chunk_size), num_test)
    num_chunks = -(-num_test // chunk)
    padded = np.zeros((num_chunks * chunk, test_x.shape[1]), np.float32)
    padded[:num_test] = test_x
    preds = _predict_chunks(
        jnp.asarray(train_x), jnp.asarray(train_y),
        jnp.asarray(padded.reshape(num_chunks, chunk, -1)),
        jnp.float32(temperature), k=int(k), num_classes=int(num_classes))
    return np.asarray(preds).reshape(-1)[:num_test]


def _l2_normalize(x: jax.Array) -> jax.Array:
    """Rows of `[n, D]` scaled to unit norm; all-zero rows stay zero."""
    norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return x / jnp.maximum(norm, 1e-12)


@functools.partial(jax.jit, static_argnames=('k', 'num_classes'))
def _predict_chunks(train_x: jax.Array, train_y: jax.Array,
                    test_chunks: jax.Array, temperature: jax.Array, *,
                    k: int, num_classes: int) -> jax.Array:
    """kNN vote for `[num_chunks, chunk, D]` test features -> `[num_chunks, chunk]`."""
    train_n = _l2_normalize(train_x)

    def one_chunk(test_x):
        chunk = test_x.shape[0]
        # HIGHEST precision: accelerators otherwise multiply in bf16, which can
        # reorder near-tied neighbours.
        sims = jnp.matmul(_l2_normalize(test_x), train_n.T,
                          precision=jax.lax.Precision.HIGHEST)  # [chunk, N]
        top_sims, top_idx = jax.lax.top_k(sims, k)  # [chunk, k]
        # Subtracting the row's best similarity rescales all of a row's votes
        # by the same factor (argmax unchanged) and keeps exp from overflowing
        # at small temperatures.
        weights = jnp.exp((top_sims - top_sims[:, :1]) / temperature)
        # Scatter-add instead of a [chunk, k, C] one-hot: same sums, with
        # memory independent of k * C (matters for 1000-class sets).
        rows = jnp.broadcast_to(jnp.arange(chunk)[:, None], top_idx.shape)
        votes = jnp.zeros((chunk, num_classes), jnp.float32)
        votes = votes.at[rows, train_y[top_idx]].add(weights)
        return jnp.argmax(votes, axis=-1).astype(jnp.int32)

    return jax.lax.map(one_chunk, test_chunks)
