import jax
import jax.numpy as jnp
import pytest

from lwfedssl_jax.checkpoints import check_resume_config
from lwfedssl_jax.utils.tree import flatten_dict, num_bytes, num_params, select, unflatten_dict


def test_tree_helpers_by_hand():
    tree = {'a': {'k': jnp.zeros((2, 3)), 'b': jnp.zeros(4, jnp.int8)}, 'c': jnp.zeros(())}
    assert num_params(tree) == 6 + 4 + 1
    assert num_bytes(tree) == 6 * 4 + 4 * 1 + 4
    assert num_bytes(jax.eval_shape(lambda: tree)) == 32
    flat = flatten_dict(tree)
    assert sorted(flat) == ['a/b', 'a/k', 'c']
    assert unflatten_dict(flat).keys() == tree.keys()
    assert flatten_dict({'x': {'y': 1}}, sep='.') == {'x.y': 1}
    assert select(tree, ['c']) == {'c': tree['c']}
    with pytest.raises(KeyError, match=r"\['z'\] are missing"):
        select(tree, ['c', 'z'])


def test_resume_config_guard():
    saved = {'fl': {'batch_size': 16}, 'log': {'progress': False}, 'augment': {'s': [1, 2]}}
    check_resume_config(saved, {**saved, 'augment': {'s': (1, 2)}}, False)  # JSON lists
    with pytest.raises(ValueError, match='fl.batch_size: saved 16 -> requested 8'):
        check_resume_config(saved, {**saved, 'fl': {'batch_size': 8}}, True)
    safe = {**saved, 'log': {'progress': True}}
    with pytest.raises(ValueError, match='only in safe keys'):
        check_resume_config(saved, safe, False)
    check_resume_config(saved, safe, True)
