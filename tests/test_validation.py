"""The config validator: every shipped config passes; every rule refuses a bad
value naming its key (parametrised over `RULES`, so a new key is tested
without editing this file); relations, data-dependent checks and paths."""

import itertools
import os

import ml_collections
import numpy as np
import pytest

from configs import cifar10_vit_tiny, common, quickstart, table2, table4, tables6_8
from lwfedssl_jax import models, validation
from lwfedssl_jax.errors import ConfigError, ConfigErrors, did_you_mean
from lwfedssl_jax.validation import RULES, check_config


def _variants():
    for method, mode in itertools.product(common.SSL_DEFAULTS, ('e2e', 'layerwise',
                                                                  'progressive')):
        yield f'quickstart:{method},{mode}', quickstart.get_config(f'method={method},mode={mode}')
        yield (f'vit_tiny:{method},{mode}',
               cifar10_vit_tiny.get_config(f'method={method},mode={mode}'))
    yield 'quickstart:smoke', quickstart.get_config('smoke=1')
    for mode, smoke in itertools.product(('e2e', 'layerwise', 'progressive'), (0, 1)):
        yield (f'quickstart:resnet18,{mode},{smoke}',
               quickstart.get_config(f'model=resnet18,mode={mode},smoke={smoke}'))
        yield f'table4:{mode},{smoke}', table4.get_config(f'mode={mode},smoke={smoke}')
    yield 'vit_tiny:smoke', cifar10_vit_tiny.get_config('smoke=1')
    for row, scale in itertools.product(table2.ROWS, table2.SCALES):
        yield f'table2:{row},{scale}', table2.get_config(f'row={row},scale={scale}')
    for row, scale in itertools.product(tables6_8.ROWS, tables6_8.SCALES):
        if not (row.startswith('beta') and scale == 'paper'):   # needs a MedMNIST file
            yield f'tables6_8:{row},{scale}', tables6_8.get_config(f'row={row},scale={scale}')


def test_every_shipped_config_passes():
    names = []
    for name, config in _variants():
        check_config(config)
        names.append(name)
    assert len(names) == (2 * 9 + 2 + 2 * 6 + len(table2.ROWS) * len(table2.SCALES)
                          + len(tables6_8.ROWS) * 3 - 9)


def test_rules_cover_exactly_the_fixed_keys_of_the_base_config():
    # The backbone's own fields (but the image size) are the backbone's.
    owned = {f'model.{k}' for k in models.model_fields('vit')} - {'model.image_size'}
    keys = {k for k in validation.flat_keys(common.base())
            if not k.startswith(('ssl.kwargs.', 'algorithms.', 'aggregators.', 'addons.'))
            and k not in owned}
    assert keys == set(RULES)


def _with(config, key, value) -> ml_collections.ConfigDict:
    """A copy of `config` with `key` set to `value`, whatever its type (as a
    hand-written config file could do)."""
    plain = config.to_dict()
    node = plain
    *parents, leaf = key.split('.')
    for p in parents:
        node = node[p]
    node[leaf] = value
    return ml_collections.ConfigDict(plain)


def _bad_values(rule):
    """Values the rule must refuse: a wrong type, then each side out of range."""
    wrong_type = {'int': 1.5, 'float': 'x', 'bool': 'yes', 'str': 3, 'opt_str': 3,
                  'pair': (1.0,), 'names': 'predictor'}[rule.kind]
    out = [wrong_type]
    if rule.choices is not None:
        out.append('no_such_choice')
    if rule.lo is not None:
        out.append(rule.lo if rule.lo_open else rule.lo - 1)
    if rule.hi is not None:
        out.append(rule.hi if rule.hi_open else rule.hi + 1)
    return out


@pytest.mark.parametrize('key', sorted(RULES))
def test_each_rule_refuses_bad_values_naming_the_key(key):
    config = quickstart.get_config()
    for bad in _bad_values(RULES[key]):
        with pytest.raises(ConfigErrors) as info:
            check_config(_with(config, key, bad))
        named = [e for e in info.value.errors if e.key == key]
        assert named, (key, bad, str(info.value))
        assert str(named[0]).startswith(f'{key}={bad!r}: ')


@pytest.mark.parametrize('key, value, match', [
    ('fl.clients_per_round', 5, r'fl.clients_per_round=5: must be <= fl.num_clients=4'),
    ('fl.client_execution', 'chunked', r'fl.client_chunk=0: .*chunk >= 1'),
    ('fl.mesh_devices', 64, r'fl.mesh_devices=64: only \d+ device'),
    ('data.source', 'imagenet', r"data.source='imagenet': unknown source kind.*"
                                r'Fix: for a TFDS dataset write tfds:imagenet'),
    ('data.source', 'folder:/no/such/dir', r"data.source='folder:/no/such/dir': "
                                           r"/no/such/dir lacks \['train', 'test'\]"),
    ('data.source', 'tfds:', r"data.source='tfds:': tfds: needs a name"),
    ('data.public_size', 1, r'data.public_size=1: a public set needs at least 2'),
    ('model.patch_size', 5, r'model.patch_size=5: must divide model.image_size=16'),
    ('model.num_heads', 3, r'model.num_heads=3: must divide model.width=64'),
    ('blocks_per_stage', 3, r'blocks_per_stage=3: must divide the 4 blocks.*\[1, 2, 4\]'),
    ('fl.total_rounds', 6, r'fl.total_rounds=6: must be a positive multiple of the '
                           r'number of stages \(4'),
    ('fl.local_parts', ('block_00',), r"fl.local_parts=\('block_00',\): \['block_00'\] "
                                      'cannot stay local'),
    ('augment.flip_prob', 1.5, r'augment.flip_prob=1.5: probabilities must be in \[0, 1\]'),
    ('augment.crop_scale', (0.5, 0.2), r'augment.crop_scale=\(0.5, 0.2\): must be a pair'),
    ('augment.hue', -0.1, r'augment.hue=-0.1: must be >= 0'),
    ('ssl.kwargs.temperature', 0.0, r'ssl.kwargs.temperature=0.0: must be > 0'),
    ('ssl.kwargs.momentum', 1.0, r'ssl.kwargs.momentum=1.0: must be in \[0, 1\)'),
    ('ssl.kwargs.momentum_schedule', 'cosin', r"ssl.kwargs.momentum_schedule='cosin': unknown"),
    ('algorithms.fedema.tau', 0.0, None),   # not the configured algorithm: unused
    ('aggregators.ldawa.warmup_rounds', -1, None),
])
def test_relations_and_owned_checks(key, value, match):
    config = _with(quickstart.get_config(), key, value)
    if match is None:
        check_config(config)
        return
    with pytest.raises(ConfigErrors, match=match):
        check_config(config)


@pytest.mark.parametrize('algorithm, key, value, match', [
    ('fedema', 'algorithms.fedema.tau', 0.0, r'algorithms.fedema.tau=0.0: must be in \(0, 1\]'),
    ('fedema', 'algorithms.fedema.divergence', 'distanse',
     r"divergence='distanse'.*Did you mean 'distance'"),
    ('fedu', 'algorithms.fedu.threshold', -1.0, r'algorithms.fedu.threshold=-1.0: must be >= 0'),
    ('fedca', 'data.public_size', 0, r'data.public_size=0: fl.algorithm=fedca needs a public'),
    ('fedavg', 'server.aggregator', 'ldawa', None),
])
def test_the_configured_algorithm_checks_its_kwargs(algorithm, key, value, match):
    config = _with(quickstart.get_config(), 'fl.algorithm', algorithm)
    config = _with(config, key, value)
    if match is None:
        check_config(config)
        return
    with pytest.raises(ConfigErrors, match=match):
        check_config(config)


def test_ldawa_warmup_is_checked_when_selected():
    config = _with(quickstart.get_config(), 'server.aggregator', 'ldawa')
    with pytest.raises(ConfigErrors, match=r'aggregators.ldawa.warmup_rounds=-1: must be >= 0'):
        check_config(_with(config, 'aggregators.ldawa.warmup_rounds', -1))


def test_a_method_refuses_kwargs_it_does_not_take():
    config = _with(quickstart.get_config('method=byol'), 'ssl.kwargs.temprature', 0.1)
    with pytest.raises(ConfigErrors, match=r"ssl.kwargs.temprature=0.1: byol does not take "
                                           r"\['temprature'\]"):
        check_config(config)


def test_unknown_and_missing_keys():
    config = quickstart.get_config().to_dict()
    config['fl']['batch_sise'] = 3
    config['algorithms']['fedvag'] = {}
    del config['optim']['b2']
    with pytest.raises(ConfigErrors) as info:
        check_config(ml_collections.ConfigDict(config))
    lines = str(info.value).splitlines()
    assert lines == [
        "algorithms.fedvag={}: 'fedvag' is not an entry of algorithms: "
        "['fedavg', 'fedca', 'fedema', 'fedu']. Did you mean 'fedavg'?",
        "fl.batch_sise=3: unknown config key. Did you mean 'fl.batch_size'? "
        'Fix: every key and its default is in configs/common.py.',
        'optim.b2=None: missing from the config. Fix: build configs from configs/common.base().',
    ]


def test_several_mistakes_are_reported_together():
    config = _with(_with(quickstart.get_config(), 'optim.base_lr', -1.0), 'eval.knn_k', 0)
    with pytest.raises(ConfigErrors) as info:
        check_config(config)
    assert [e.key for e in info.value.errors] == ['optim.base_lr', 'eval.knn_k']


def test_client_data_checks():
    config = quickstart.get_config()      # batch 64
    validation.check_client_data(config, np.array([64, 300]), 1000)
    with pytest.raises(ConfigErrors, match=r'fl.batch_size=64: larger than the smallest '
                                           r'client \(63 examples.*batch_size=32 \(<= 63\)'):
        validation.check_client_data(config, np.array([63, 300]), 1000)
    with pytest.raises(ConfigErrors, match=r'eval.knn_k=20: exceeds the 19 training'):
        validation.check_client_data(config, np.array([64, 64]), 19)
    validation.check_client_data(config, np.array([64, 64]))   # resources: no train size


def test_workdir_and_run_dir_checks(tmp_path):
    afile = tmp_path / 'f'
    afile.write_text('x')
    with pytest.raises(ConfigError, match=r"--workdir='.*f': exists and is not a directory"):
        validation.check_workdir(str(afile))
    with pytest.raises(ConfigError, match=r'is not a writable directory'):
        validation.check_workdir(str(afile / 'sub'))
    assert validation.check_workdir(str(tmp_path / 'a' / 'b')) == str(tmp_path / 'a' / 'b')
    with pytest.raises(ConfigError, match='is not a directory'):
        validation.check_run_dir(str(tmp_path / 'nope'))
    with pytest.raises(ValueError, match='no config.json there'):
        validation.check_run_dir(str(tmp_path))
    os.makedirs(tmp_path / 'run')
    (tmp_path / 'run' / 'config.json').write_text('{}')
    assert validation.check_run_dir(str(tmp_path / 'run')) == str(tmp_path / 'run')


def test_did_you_mean():
    keys = list(RULES)
    assert did_you_mean('fl.batch_sise', keys) == " Did you mean 'fl.batch_size'?"
    assert did_you_mean('batch_size', keys) == " Did you mean 'fl.batch_size'?"
    assert did_you_mean('zzzzzz', keys) == ''
