"""The protocol registry's contract (every entry, present and future), the
kNN / linear-probe numbers training always reported, the train-time
monitor, and the validation of the eval.* keys."""

import math

import jax
import pytest

from configs import quickstart
from lwfedssl_jax import builders, train, validation
from lwfedssl_jax.data import sources
from lwfedssl_jax.data.dataset import ImageDataset
from lwfedssl_jax.errors import ConfigError, ConfigErrors
from lwfedssl_jax.evaluation import features, knn, linear_probe, monitor, protocols
from lwfedssl_jax.evaluation.metrics import METRICS
from lwfedssl_jax.evaluation.protocols import PROTOCOLS, run_protocols, short_name
from lwfedssl_jax.models import MODELS, make_backbone

ENCODER = make_backbone({'name': 'vit', **MODELS['vit'].defaults, **MODELS['vit'].tiny})
PARAMS = ENCODER.init(jax.random.key(0))
SETTINGS = {**quickstart.get_config('smoke=1').eval.to_dict(), 'knn_k': 5, 'batch_size': 32}
SETTINGS['finetune'] = {**SETTINGS['finetune'], 'epochs': 2, 'warmup_epochs': 1,
                        'batch_size': 16}


@pytest.fixture(scope='module')
def data():
    return sources.load_dataset('synthetic', image_size=8, synthetic_sizes=(64, 40), seed=2)


@pytest.mark.parametrize('name', sorted(PROTOCOLS))
def test_contract(name, data):
    fn = PROTOCOLS[name]
    first = fn(ENCODER, PARAMS, 2, data, SETTINGS, 3)
    assert f'{name}_top1' in first and all(k.startswith(f'{name}_') for k in first)
    assert all(math.isfinite(v) and 0 <= v <= 100 for v in first.values()), first
    assert fn(ENCODER, PARAMS, 2, data, SETTINGS, 3) == first          # deterministic
    unlabelled = ImageDataset('images:/x', data.train_images, None,
                              data.train_images[:0], None, 0)
    with pytest.raises(ConfigError, match='has no labels'):
        fn(ENCODER, PARAMS, 2, unlabelled, SETTINGS, 3)


def test_knn_and_probe_keep_the_numbers_training_reported(data, monkeypatch):
    """Second path: the evaluators called on features directly, as the
    monitor did before the registry; and the features are extracted once."""
    fn = protocols._feature_fn(ENCODER, 2)
    feats = [features.extract_features(lambda x: fn(PARAMS, x), images, batch_size=32)
             for images in (data.train_images, data.test_images)]
    expected_knn = 100 * knn.knn_accuracy(feats[0], data.train_labels, feats[1],
                                          data.test_labels, num_classes=10, k=5,
                                          temperature=SETTINGS['knn_temperature'])
    expected_probe = 100 * linear_probe.linear_probe_accuracy(
        feats[0], data.train_labels, feats[1], data.test_labels, num_classes=10,
        epochs=SETTINGS['probe_epochs'], batch_size=SETTINGS['probe_batch_size'],
        learning_rate=SETTINGS['probe_lr'], weight_decay=SETTINGS['probe_weight_decay'],
        seed=7)
    calls = []
    original = protocols.extract_features
    monkeypatch.setattr(protocols, 'extract_features',
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    got = run_protocols(('knn', 'linear_probe'), ENCODER, PARAMS, 2, data, SETTINGS, 7)
    assert got['knn_top1'] == expected_knn
    assert got['linear_probe_top1'] == expected_probe
    assert len(calls) == 2   # train and test split, shared by both protocols


def test_monitor_prefixes_and_checks_datasets(data):
    other = data._replace(name='tfds:cifar100')
    sets = monitor.eval_datasets(('synthetic', 'tfds:cifar100'), None,
                                 {'synthetic': data, 'tfds:cifar100': other}.get)
    assert list(sets) == ['synthetic', 'cifar100']
    flat = monitor.evaluate_encoder(ENCODER, PARAMS, 2, sets, protocols=('knn',),
                                    settings=SETTINGS, seed=0)
    alone = run_protocols(('knn',), ENCODER, PARAMS, 2, data, SETTINGS, 0)
    assert flat == {**{f'synthetic/{k}': v for k, v in alone.items()},
                    **{f'cifar100/{k}': v for k, v in alone.items()}}
    assert monitor.eval_datasets((), data, None) == {'': data}
    unlabelled = ImageDataset('images:/x', data.train_images, None,
                              data.train_images[:0], None, 0)
    with pytest.raises(ConfigError, match='eval.datasets.*has no labels'):
        monitor.eval_datasets((), unlabelled, None)
    with pytest.raises(ConfigError, match='share a short name'):
        monitor.eval_datasets(('folder:/a/cifar', 'tfds:cifar'), data, lambda s: data)


def test_short_names():
    assert [short_name(s) for s in ('digits', 'tfds:cifar100', 'folder:/data/caltech101/',
                                    'medmnist:/x/pathmnist_64.npz', 'tfds:a/b:1.0')] == [
        'digits', 'cifar100', 'caltech101', 'pathmnist_64', 'a_b_1.0']


@pytest.mark.parametrize('key, value, message', [
    ('protocols', ('knn', 'svm'), "'svm' is unknown"),
    ('protocols', (), 'no protocol is named'),
    ('protocols', ('knn', 'knn'), 'a protocol is repeated'),
    ('datasets', ('imagenet',), "'imagenet': unknown source kind"),
    ('finetune.epochs', -1, 'eval.finetune.epochs=-1: must be an int >= 1'),
    ('finetune.warmup_epochs', 41, 'warmup_epochs=41: must be < eval.finetune.epochs=40'),
    ('finetune.randaugment_magnitude', 31, 'randaugment_magnitude=31: must be an int'),
])
def test_validation_of_eval_keys(key, value, message):
    config = quickstart.get_config('smoke=1')
    config.unlock()
    node = config.eval
    *parents, leaf = key.split('.')
    for p in parents:
        node = node[p]
    node[leaf] = value
    for check in (validation.check_config, validation.check_eval):
        with pytest.raises(ConfigErrors, match=message.replace('(', r'\(')):
            check(config)


def test_protocol_lookup():
    assert protocols.get('finetune') is PROTOCOLS['finetune']
    with pytest.raises(ConfigError, match="Did you mean 'knn'"):
        protocols.get('knnn')


def test_training_evaluates_eval_datasets_under_prefixed_keys(tmp_path):
    """A smoke run on synthetic data evaluated on digits: every evaluation
    key carries the 'digits/' prefix, and the final numbers equal the
    monitor's on the returned parameters and independently loaded digits."""
    config = quickstart.get_config('smoke=1')
    config.unlock()
    config.eval.datasets = ('digits',)
    config.eval.protocols = ('knn',)
    summary = train.run(config, str(tmp_path))
    assert set(summary['final_eval']) == {f'digits/knn_{m}' for m in METRICS}
    assert all(set(e) - {'stage'} == set(summary['final_eval']) for e in summary['evals'])
    digits = sources.load_dataset('digits', image_size=config.model.image_size)
    setup = builders.build(config)
    expected = run_protocols(('knn',), setup.encoder, summary['params'],
                             setup.plan[-1].num_blocks, digits, config.eval.to_dict(),
                             config.seed)
    assert summary['final_eval'] == {f'digits/{k}': v for k, v in expected.items()}
