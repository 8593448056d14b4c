"""Full fine-tuning: the jitted epochs against a plain per-batch loop, the
stratified subset against its allocation rule, settings and determinism."""

import fractions
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import common
from lwfedssl_jax.checkpoints import ADDED_KEYS
from lwfedssl_jax.data import sources
from lwfedssl_jax.data.augment import to_float
from lwfedssl_jax.errors import ConfigError
from lwfedssl_jax.evaluation import finetune
from lwfedssl_jax.evaluation.finetune import FinetuneSettings
from lwfedssl_jax.models import MODELS, make_backbone

ENCODER = make_backbone({'name': 'vit', **MODELS['vit'].defaults, **MODELS['vit'].tiny})
BLOCKS = 2   # of 3: the third block must be left alone


@pytest.fixture(scope='module')
def data():
    return sources.load_dataset('synthetic', image_size=8, synthetic_sizes=(200, 60), seed=1)


def _manual_fit(params, images, labels, s: FinetuneSettings, seed, num_classes=10):
    """Second path: a Python loop over the documented order, the last batch
    of an epoch really smaller, no augmentation."""
    key = jax.random.key(seed)
    if s.train_subset:
        keep = finetune.stratified_subset(labels, s.train_subset, jax.random.fold_in(key, 0))
        images, labels = images[keep], labels[keep]
    n = len(labels)
    batch = min(s.batch_size, n)
    steps = -(-n // batch)
    tx = optax.adamw(optax.warmup_cosine_decay_schedule(
        0.0, s.learning_rate, s.warmup_epochs * steps, s.epochs * steps, 0.0),
        weight_decay=s.weight_decay)
    width = ENCODER.feature_width(BLOCKS)
    p = {'encoder': {k: params[k] for k in ENCODER.encoder_parts(BLOCKS)},
         'head': {'kernel': jnp.zeros((width, num_classes)), 'bias': jnp.zeros(num_classes)}}
    opt = tx.init(p)

    def loss(p, x, y):
        feats = ENCODER.features(p['encoder'], to_float(x), BLOCKS)
        logits = feats @ p['head']['kernel'] + p['head']['bias']
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit   # compiles once per batch shape (full, last)
    def step(p, opt, x, y):
        updates, opt = tx.update(jax.grad(loss)(p, x, y), opt, p)
        return optax.apply_updates(p, updates), opt

    for epoch in range(s.epochs):
        perm = np.asarray(jax.random.permutation(
            jax.random.fold_in(jax.random.fold_in(key, 1), epoch), n))
        for i in range(steps):
            idx = perm[i * batch:(i + 1) * batch]
            p, opt = step(p, opt, images[idx], labels[idx])
    return p


def test_epochs_equal_a_plain_loop_with_a_smaller_last_batch(data):
    # 14 images, subset 11 of them, batch 4: steps of 4, 4 and 3.
    images, labels = data.train_images[:14], data.train_labels[:14]
    s = FinetuneSettings(epochs=3, warmup_epochs=1, batch_size=4, learning_rate=3e-3,
                         weight_decay=0.05, randaugment_ops=0, train_subset=11)
    params = ENCODER.init(jax.random.key(0))
    got = finetune.fit(ENCODER, params, BLOCKS, images, labels, num_classes=10,
                       settings=s, seed=5)
    want = _manual_fit(params, images, labels, s, seed=5)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    # Equal up to float noise (1e-6; an epoch in another order moves every
    # leaf by >= 4e-3), except the attention key biases: their true gradient
    # is 0 (softmax ignores a shift shared by a query's scores), so Adam's
    # normalised step turns float noise into steps of up to 1e-4 there.
    for path, a in jax.tree_util.tree_leaves_with_path(got):
        if 'key' in jax.tree_util.keystr(path) and 'bias' in jax.tree_util.keystr(path):
            continue
        b = functools.reduce(lambda t, k: t[k.key], path, want)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5,
                                   err_msg=jax.tree_util.keystr(path))
    # End to end: every present block moved, the absent one is not there.
    for part in ENCODER.encoder_parts(BLOCKS):
        moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), got['encoder'][part],
                             params[part])
        assert max(jax.tree.leaves(moved)) > 0, part
    assert set(got['encoder']) == set(ENCODER.encoder_parts(BLOCKS))


def test_deterministic_augmented_and_leaves_the_input_alone(data):
    images, labels = data.train_images[:40], data.train_labels[:40]
    params = ENCODER.init(jax.random.key(1))
    before = jax.tree.map(np.array, params)
    s = FinetuneSettings(epochs=2, warmup_epochs=1, batch_size=16)
    run = lambda s, seed: finetune.fit(ENCODER, params, BLOCKS, images, labels,
                                       num_classes=10, settings=s, seed=seed)
    first, again = run(s, 0), run(s, 0)
    jax.tree.map(np.testing.assert_array_equal, first, again)
    plain = run(s._replace(randaugment_ops=0), 0)
    other_seed = run(s, 1)
    diff = lambda a, b: max(jax.tree.leaves(jax.tree.map(
        lambda x, y: float(jnp.abs(x - y).max()), a, b)))
    assert diff(first, plain) > 0 and diff(first, other_seed) > 0
    # The epoch donates its state; the caller's parameters survive intact.
    jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, params))


def test_learns_a_separable_task(data):
    """Chance is 10%; the synthetic classes are colour + grating."""
    s = FinetuneSettings(epochs=8, warmup_epochs=1, batch_size=32, learning_rate=3e-3,
                         randaugment_ops=0)
    preds = finetune.finetune_predict(
        ENCODER, ENCODER.init(jax.random.key(2)), BLOCKS, data.train_images,
        data.train_labels, data.test_images, num_classes=10, settings=s, seed=0)
    assert preds.shape == data.test_labels.shape and preds.dtype == np.int32
    assert np.mean(preds == data.test_labels) > 0.5


def test_stratified_subset_follows_the_largest_remainder_rule():
    labels = np.repeat(np.arange(5), [37, 2, 20, 11, 30])   # N = 100
    for size in (1, 7, 33, 99, 100):
        idx = finetune.stratified_subset(labels, size, jax.random.key(0))
        assert len(idx) == len(set(idx)) == size and np.all(np.diff(idx) > 0)
        counts = np.bincount(labels[idx], minlength=5)
        # Hamilton's method in exact fractions, as a second path.
        shares = [fractions.Fraction(size * n, 100) for n in np.bincount(labels)]
        quota = [int(q) for q in shares]
        order = sorted(range(5), key=lambda c: (-(shares[c] - quota[c]), c))
        for c in order[:size - sum(quota)]:
            quota[c] += 1
        assert counts.tolist() == quota, size
    a = finetune.stratified_subset(labels, 33, jax.random.key(0))
    assert np.array_equal(a, finetune.stratified_subset(labels, 33, jax.random.key(0)))
    assert not np.array_equal(a, finetune.stratified_subset(labels, 33, jax.random.key(1)))
    with pytest.raises(ValueError, match='size'):
        finetune.stratified_subset(labels, 101, jax.random.key(0))


def test_defaults_are_the_papers_and_the_configs():
    paper = FinetuneSettings()
    assert (paper.epochs, paper.warmup_epochs, paper.batch_size, paper.learning_rate,
            paper.weight_decay, paper.randaugment_ops, paper.randaugment_magnitude,
            paper.train_subset) == (40, 10, 256, 1e-3, 1e-5, 2, 9, 0)
    assert common.base().eval.finetune.to_dict() == paper._asdict()
    assert {k: v for k, v in ADDED_KEYS.items() if k.startswith('eval.finetune.')} == {
        f'eval.finetune.{k}': v for k, v in paper._asdict().items()}


@pytest.mark.parametrize('change, message', [
    (dict(warmup_epochs=40), 'warmup_epochs=40: must be < eval.finetune.epochs=40'),
    (dict(epochs=0, warmup_epochs=0), 'epochs=0'),
    (dict(randaugment_magnitude=31), 'randaugment_magnitude=31'),
    (dict(learning_rate=0.0), 'learning_rate=0.0'),
    (dict(train_subset=-1), 'train_subset=-1'),
])
def test_impossible_settings_are_refused(change, message):
    with pytest.raises(ConfigError, match=message.replace('(', r'\(')):
        finetune.check_settings(FinetuneSettings()._replace(**change))
