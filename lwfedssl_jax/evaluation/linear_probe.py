"""Frozen-encoder linear probe: softmax regression on standardised features.

The encoder is not involved: features are extracted once (see
`features.extract_features`) and a single linear layer `[D, C]` + bias is
trained on them with AdamW and a cosine learning-rate decay. The whole
optimisation (every epoch and minibatch) plus the test prediction is one
jitted call, so a probe costs one compilation and no per-step Python.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lwfedssl_jax.evaluation.features import check_labeled_features

# Features whose train std is below this are set to exactly zero (train and
# test). Such a feature carries no train signal, so any weight on it is
# unidentified; dividing by a floored std would instead turn the ~1e-8 float32
# residuals of (x - mean) into a spurious signal that Adam's per-parameter
# normalisation happily fits, and would amplify any test-time deviation of
# the feature a million-fold. Exact zeros give zero gradient, zero decay, and
# a weight that stays at its zero initialisation.
_MIN_STD = 1e-6


def linear_probe_accuracy(train_features, train_labels, test_features,
                          test_labels, *, num_classes: int, epochs: int = 100,
                          batch_size: int = 256, learning_rate: float = 1e-2,
                          weight_decay: float = 1e-4, seed: int = 0) -> float:
    """Trains a linear softmax classifier on train features, scores the test split.

    Features are standardised with the train mean and std (near-constant
    features, train std < 1e-6, are zeroed and so ignored). Each epoch visits
    `N // batch_size` minibatches of a fresh permutation (the remainder is
    dropped that epoch, a different remainder next epoch); with
    `N <= batch_size` every step is full-batch. Weights start at zero, so the
    result depends on `seed` only through the minibatch order, and is
    deterministic for a given seed.

    Args:
        train_features: `[N, D]` float features.
        train_labels: `[N]` int labels in `[0, num_classes)`.
        test_features: `[M, D]` float features.
        test_labels: `[M]` int labels in `[0, num_classes)`.
        num_classes: number of classes C.
        epochs: passes over the train set (>= 1).
        batch_size: minibatch size (>= 1).
        learning_rate: peak AdamW learning rate (> 0), cosine-decayed to 0.
        weight_decay: decoupled AdamW weight decay on the weights (>= 0); the
            bias is not decayed.
        seed: seed of the per-epoch permutations.

    Returns:
        Test top-1 accuracy in [0, 1].

    Raises:
        ValueError: on shape/label problems or out-of-range hyper-parameters.
    """
    train_x, train_y, test_x, test_y = check_labeled_features(
        train_features, train_labels, test_features, test_labels, num_classes)
    preds = _predict(train_x, train_y, test_x, num_classes, epochs, batch_size,
                     learning_rate, weight_decay, seed)
    return float(np.mean(preds == test_y))


def linear_probe_predict(train_features, train_labels, test_features, *,
                         num_classes: int, epochs: int = 100, batch_size: int = 256,
                         learning_rate: float = 1e-2, weight_decay: float = 1e-4,
                         seed: int = 0) -> np.ndarray:
    """The probe's `[M] int32` test predictions (see `linear_probe_accuracy`,
    whose accuracy is the mean of these being right)."""
    # No test labels here; all-zero stand-ins pass validation.
    dummy = np.zeros(np.shape(test_features)[:1], np.int32)
    train_x, train_y, test_x, _ = check_labeled_features(
        train_features, train_labels, test_features, dummy, num_classes)
    return _predict(train_x, train_y, test_x, num_classes, epochs, batch_size,
                    learning_rate, weight_decay, seed)


def _predict(train_x, train_y, test_x, num_classes, epochs, batch_size,
             learning_rate, weight_decay, seed) -> np.ndarray:
    """Checks the probe's hyper-parameters and fits it on validated arrays."""
    for name, value in (('epochs', epochs), ('batch_size', batch_size)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f'{name} must be a positive int, got {value!r}.')
    if not learning_rate > 0:
        raise ValueError(f'learning_rate must be > 0, got {learning_rate!r}.')
    if not weight_decay >= 0:
        raise ValueError(f'weight_decay must be >= 0, got {weight_decay!r}.')
    if not isinstance(seed, (int, np.integer)):
        raise ValueError(f'seed must be an int, got {seed!r}.')

    preds = _fit_and_predict(
        jnp.asarray(train_x), jnp.asarray(train_y), jnp.asarray(test_x),
        jax.random.key(seed), jnp.float32(learning_rate),
        jnp.float32(weight_decay), epochs=int(epochs),
        batch_size=int(batch_size), num_classes=int(num_classes))
    return np.asarray(preds)


@functools.partial(jax.jit,
                   static_argnames=('epochs', 'batch_size', 'num_classes'))
def _fit_and_predict(train_x: jax.Array, train_y: jax.Array,
                     test_x: jax.Array, key: jax.Array,
                     learning_rate: jax.Array, weight_decay: jax.Array, *,
                     epochs: int, batch_size: int,
                     num_classes: int) -> jax.Array:
    """Standardises, trains the probe, and predicts.

    Args:
        train_x: `[N, D] float32`.
        train_y: `[N] int32`.
        test_x: `[M, D] float32`.
        key: PRNG key for the per-epoch permutations.
        learning_rate: scalar float32 (traced: no recompile per value).
        weight_decay: scalar float32 (traced).
        epochs, batch_size, num_classes: static loop/shape sizes.

    Returns:
        `[M] int32` test predictions.
    """
    num, dim = train_x.shape
    mean = train_x.mean(axis=0)
    std = train_x.std(axis=0)
    inv_std = jnp.where(std < _MIN_STD, 0.0, 1.0 / jnp.maximum(std, _MIN_STD))
    train_x = (train_x - mean) * inv_std
    test_x = (test_x - mean) * inv_std

    full_batch = num <= batch_size
    batch = num if full_batch else batch_size
    steps_per_epoch = num // batch
    schedule = optax.cosine_decay_schedule(learning_rate,
                                           decay_steps=epochs * steps_per_epoch)
    tx = optax.adamw(schedule, weight_decay=weight_decay,
                     mask={'w': True, 'b': False})
    params = {'w': jnp.zeros((dim, num_classes), jnp.float32),
              'b': jnp.zeros((num_classes,), jnp.float32)}

    def loss_fn(params, x, y):
        logits = x @ params['w'] + params['b']
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def step(params, opt_state, x, y):
        grads = jax.grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def epoch_body(epoch, carry):
        if full_batch:
            # The mean loss is order-invariant, so no permutation is needed.
            return step(*carry, train_x, train_y)
        perm = jax.random.permutation(jax.random.fold_in(key, epoch), num)

        def step_body(i, carry):
            idx = jax.lax.dynamic_slice_in_dim(perm, i * batch, batch)
            return step(*carry, train_x[idx], train_y[idx])

        return jax.lax.fori_loop(0, steps_per_epoch, step_body, carry)

    params, _ = jax.lax.fori_loop(0, epochs, epoch_body,
                                  (params, tx.init(params)))
    logits = test_x @ params['w'] + params['b']
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
