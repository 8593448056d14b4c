"""`KEY=VALUE` overrides typed like the value they replace (utils/overrides.py)."""

import ml_collections
import pytest

from lwfedssl_jax.utils.overrides import set_override, typed_like


@pytest.mark.parametrize('text, current, expected', [
    ('true', False, True), ('0', True, False), ('7', 3, 7), ('2.5', 1.0, 2.5),
    ('1e-3', 0.1, 0.001), ('a,b', (), ('a', 'b')), ("('a', 'b')", (), ('a', 'b')),
    ('', ('x',), ()), ('blocks', 'none', 'blocks'), ('/data', None, '/data'),
])
def test_typed_like(text, current, expected):
    value = typed_like(text, current)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize('text, current, message', [
    ('yes', True, 'expects a bool'), ('1.5', 3, 'expects a int'), ('x', 0.5, 'expects a float'),
])
def test_typed_like_refuses(text, current, message):
    with pytest.raises(ValueError, match=message):
        typed_like(text, current)


def test_set_override_types_strings_and_names_unknown_keys():
    config = ml_collections.ConfigDict({'eval': {'finetune': {'epochs': 40}, 'protocols': ('knn',)}})
    set_override(config, 'eval.finetune.epochs', '5')
    set_override(config, 'eval.protocols', ('knn', 'finetune'))   # non-strings as they are
    assert config.eval.finetune.epochs == 5
    assert config.eval.protocols == ('knn', 'finetune')
    with pytest.raises(KeyError, match=r"keys here: \['epochs'\]"):
        set_override(config, 'eval.finetune.epoch', '5')
    with pytest.raises(KeyError, match="no key 'evl'"):
        set_override(config, 'evl.x', '1')
