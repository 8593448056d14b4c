"""Full fine-tuning: the paper's downstream protocol (paper notes §6).

A new linear head `[D, C]` (zero-initialised) is put on the encoder's
feature (`Backbone.features`: for the ViT, the class token after the final
LayerNorm, the paper being silent) and the present blocks plus the head are
ALL trained end to end with softmax cross-entropy: AdamW with decoupled
weight decay on every parameter (as torch's `AdamW(model.parameters())`),
a linear warm-up from 0 to the peak learning rate, then a cosine decay to 0
(`optax.warmup_cosine_decay_schedule`, per step), and RandAugment
(`data/randaugment.py`) on every training batch, applied at the images'
own size (32 px in the paper, whose data are resized to 32x32 first).
Defaults are the paper's: 40 epochs of which 10 warm up, batch 256, lr
1e-3, weight decay 1e-5, RandAugment(2, 9).

Training images stay `[N, H, W, 3]` uint8 on device; one jitted call runs
a whole epoch (`lax.scan` over its steps), so the host only prints a line
per epoch. All randomness is `fold_in`s of `jax.random.key(seed)`: the
subset (`_SUBSET`), each epoch's order (`_ORDER`, epoch) and each step's
augmentation (`_AUGMENT`, epoch, step).

The last partial batch is kept, not dropped: an epoch of N images has
`ceil(N / B)` steps over a fresh permutation padded to a multiple of B; the
padding rows have weight 0, and each step's loss is the mean over its real
rows, so every image is seen once per epoch and the last step is a smaller
batch, as torch's `DataLoader(drop_last=False)`; shapes stay fixed, so the
epoch compiles once. B is `min(batch_size, N)`.
"""

import functools
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lwfedssl_jax.data.augment import to_float
from lwfedssl_jax.data.randaugment import NUM_BINS, randaugment
from lwfedssl_jax.errors import ConfigError
from lwfedssl_jax.evaluation.features import extract_features

# Tags of the independent random streams (fold_in'd into the seed's key).
_SUBSET, _ORDER, _AUGMENT = 0, 1, 2


class FinetuneSettings(NamedTuple):
    """`config.eval.finetune` (defaults: the paper's, as configs/common.py).

    Attributes:
        epochs: passes over the (subset of the) training split.
        warmup_epochs: epochs of linear warm-up, `< epochs`.
        batch_size: images per step (the last step of an epoch is smaller).
        learning_rate: peak AdamW learning rate.
        weight_decay: AdamW decoupled weight decay, on every parameter.
        randaugment_ops: RandAugment ops per image (0 = no augmentation).
        randaugment_magnitude: RandAugment magnitude bin, in [0, 30].
        train_subset: fine-tune on this many training images, a seeded
            class-stratified subset (`stratified_subset`); 0 = all.
    """
    epochs: int = 40
    warmup_epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    randaugment_ops: int = 2
    randaugment_magnitude: int = 9
    train_subset: int = 0


def check_settings(s: FinetuneSettings) -> FinetuneSettings:
    """Raises `ConfigError` (key `eval.finetune.<field>`) for settings that
    cannot run; their types and single-key ranges are `validation.RULES`'."""
    def refuse(field, problem):
        raise ConfigError(f'eval.finetune.{field}', getattr(s, field), problem)

    for field in ('epochs', 'batch_size'):
        if getattr(s, field) < 1:
            refuse(field, 'must be an int >= 1.')
    for field in ('warmup_epochs', 'randaugment_ops', 'train_subset'):
        if getattr(s, field) < 0:
            refuse(field, 'must be an int >= 0.')
    if s.warmup_epochs >= s.epochs:
        refuse('warmup_epochs', f'must be < eval.finetune.epochs={s.epochs} (the cosine '
               'decay needs at least one epoch).')
    if not 0 <= s.randaugment_magnitude < NUM_BINS:
        refuse('randaugment_magnitude', f'must be a bin in [0, {NUM_BINS - 1}].')
    if not s.learning_rate > 0:
        refuse('learning_rate', 'must be > 0.')
    if not s.weight_decay >= 0:
        refuse('weight_decay', 'must be >= 0.')
    return s


def stratified_subset(labels, size: int, key: jax.Array) -> np.ndarray:
    """Sorted indices of a class-stratified random subset of `size` examples.

    Class c (with n_c of the N examples) gets `floor(size * n_c / N)`
    places; the places left go, one each, to the classes with the largest
    remainders `size * n_c mod N` (ties: lower class first). Its members are
    the first ones of `jax.random.permutation(fold_in(key, c), n_c)`.

    Args:
        labels: `[N]` int labels.
        size: subset size in `[1, N]`.
        key: PRNG key.

    Returns:
        `[size]` int64 indices into `labels`, ascending.
    """
    labels = np.asarray(labels)
    if not 1 <= size <= len(labels):
        raise ValueError(f'size must be in [1, {len(labels)}], got {size}.')
    classes, counts = np.unique(labels, return_counts=True)
    quota, remainder = np.divmod(size * counts, len(labels))
    order = np.lexsort((classes, -remainder))   # largest remainder, then class
    quota[order[:size - quota.sum()]] += 1
    picks = []
    for c, q in zip(classes, quota):
        members = np.flatnonzero(labels == c)
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, int(c)),
                                                 len(members)))
        picks.append(members[perm[:q]])
    return np.sort(np.concatenate(picks))


class _Fns(NamedTuple):
    init: Callable      # encoder params -> (params, opt_state)
    epoch: Callable     # (state, images, labels, key, epoch) -> (state, (loss_sum, correct))
    schedule: Callable  # step -> learning rate


@functools.lru_cache(maxsize=16)
def _build(encoder, num_blocks: int, num_classes: int, batch: int, steps: int,
           s: FinetuneSettings) -> _Fns:
    """The jitted functions of one fine-tuning shape (cached: a Scratch row
    or a second seed reuses the compiled epoch)."""
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=s.learning_rate, warmup_steps=s.warmup_epochs * steps,
        decay_steps=s.epochs * steps, end_value=0.0)
    tx = optax.adamw(schedule, weight_decay=s.weight_decay)
    width = encoder.feature_width(num_blocks)

    def init(encoder_params):
        params = {'encoder': encoder_params,
                  'head': {'kernel': jnp.zeros((width, num_classes), jnp.float32),
                           'bias': jnp.zeros((num_classes,), jnp.float32)}}
        return params, tx.init(params)

    def loss_fn(params, images_u8, labels, weight):
        out = _logits(encoder, num_blocks, params, images_u8)
        ce = optax.softmax_cross_entropy_with_integer_labels(out, labels)
        loss = jnp.sum(ce * weight) / jnp.maximum(weight.sum(), 1.0)
        correct = jnp.sum((jnp.argmax(out, -1) == labels) * weight)
        return loss, (loss * weight.sum(), correct)

    def epoch(state, images, labels, key, epoch_index):
        num = images.shape[0]
        perm = jax.random.permutation(jax.random.fold_in(
            jax.random.fold_in(key, _ORDER), epoch_index), num)
        idx = jnp.pad(perm, (0, steps * batch - num)).reshape(steps, batch)
        weight = (jnp.arange(steps * batch) < num).astype(jnp.float32).reshape(steps, batch)
        aug_key = jax.random.fold_in(jax.random.fold_in(key, _AUGMENT), epoch_index)

        def step(carry, xs):
            params, opt_state = carry
            idx_b, weight_b, i = xs
            x = images[idx_b]   # [B, H, W, 3] uint8
            if s.randaugment_ops:
                x = randaugment(jax.random.fold_in(aug_key, i), x,
                                num_ops=s.randaugment_ops, magnitude=s.randaugment_magnitude)
            grads, sums = jax.grad(loss_fn, has_aux=True)(params, x, labels[idx_b], weight_b)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), sums

        state, (loss_sums, correct) = jax.lax.scan(step, state,
                                                   (idx, weight, jnp.arange(steps)))
        return state, (loss_sums.sum(), correct.sum())

    return _Fns(jax.jit(init), jax.jit(epoch, donate_argnums=0), schedule)


def fit(encoder, params: dict, num_blocks: int, train_images, train_labels, *,
        num_classes: int, settings: FinetuneSettings, seed: int, name: str = '') -> dict:
    """Fine-tunes the encoder's present blocks and a new linear head.

    Args:
        encoder: a `Backbone`.
        params: its parameters (at least `encoder.encoder_parts(num_blocks)`;
            other parts, such as SSL heads, are ignored). Not modified.
        num_blocks: blocks to run and train.
        train_images: `[N, H, W, 3]` uint8.
        train_labels: `[N]` int labels in `[0, num_classes)`.
        num_classes: classes C of the head.
        settings: the protocol's hyper-parameters (checked here).
        seed: seed of the subset, the epochs' order and the augmentation.
        name: what the progress lines (one per epoch) call the data.

    Returns:
        The trained `{'encoder': encoder parts, 'head': {'kernel': [D, C],
        'bias': [C]}}` (for `predict`).
    """
    check_settings(settings)
    key = jax.random.key(seed)
    train_labels = np.asarray(train_labels, np.int32)
    if settings.train_subset:
        keep = stratified_subset(train_labels, settings.train_subset,
                                 jax.random.fold_in(key, _SUBSET))
        train_images, train_labels = train_images[keep], train_labels[keep]
    num = len(train_labels)
    batch = min(settings.batch_size, num)
    steps = -(-num // batch)
    fns = _build(encoder, num_blocks, num_classes, batch, steps, settings)
    # Copies: the epoch donates its state, and must not free the caller's arrays.
    parts = jax.tree.map(jnp.array, {p: params[p] for p in encoder.encoder_parts(num_blocks)})
    state = fns.init(parts)
    images = jax.device_put(np.asarray(train_images, np.uint8))
    labels = jnp.asarray(train_labels)
    for epoch in range(settings.epochs):
        t0 = time.time()
        state, (loss_sum, correct) = fns.epoch(state, images, labels, key,
                                               jnp.int32(epoch))
        loss, acc = float(loss_sum) / num, 100.0 * float(correct) / num
        print(f'[lwfedssl] finetune {name} epoch {epoch + 1}/{settings.epochs}: loss '
              f'{loss:.4f}, train top-1 {acc:.1f}%, lr '
              f'{float(fns.schedule((epoch + 1) * steps)):.2e}, {time.time() - t0:.1f} s',
              flush=True)
        if not np.isfinite(loss):
            raise FloatingPointError(
                f'fine-tuning diverged at epoch {epoch + 1} (loss {loss}); lower '
                'eval.finetune.learning_rate.')
    return state[0]


def predict(encoder, trained: dict, num_blocks: int, images, *,
            batch_size: int = 256) -> np.ndarray:
    """`[M] int32` classes of `[M, H, W, 3]` uint8 `images` under `fit`'s result."""
    fn = _logits_fn(encoder, num_blocks)
    logits = extract_features(lambda x: fn(trained, x), images, batch_size=batch_size)
    return np.argmax(logits, axis=-1).astype(np.int32)


@functools.lru_cache(maxsize=16)
def _logits_fn(encoder, num_blocks: int):
    return jax.jit(lambda p, x: _logits(encoder, num_blocks, p, x))


def _logits(encoder, num_blocks: int, params: dict, images_u8: jax.Array) -> jax.Array:
    """`[b, H, W, 3]` uint8 -> `[b, C]` logits of encoder + head."""
    feats = encoder.features(params['encoder'], to_float(images_u8), num_blocks)
    return feats @ params['head']['kernel'] + params['head']['bias']


def finetune_predict(encoder, params: dict, num_blocks: int, train_images, train_labels,
                     test_images, *, num_classes: int, settings: FinetuneSettings,
                     seed: int, predict_batch_size: int = 256,
                     name: str = '') -> np.ndarray:
    """`fit` on the train split, then `predict` the `[M]` test classes (int32)."""
    trained = fit(encoder, params, num_blocks, train_images, train_labels,
                  num_classes=num_classes, settings=settings, seed=seed, name=name)
    return predict(encoder, trained, num_blocks, test_images, batch_size=predict_batch_size)
