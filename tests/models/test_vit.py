import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from lwfedssl_jax.models.vit import VIT_TINY, ViTConfig, ViTEncoder, block_name
from lwfedssl_jax.utils.tree import num_params

TINY = ViTConfig(image_size=8, patch_size=4, width=8, depth=3, num_heads=2,
                 mlp_dim=16)


def test_vit_tiny_parameter_counts_match_spec():
    enc = ViTEncoder(VIT_TINY)
    shapes = jax.eval_shape(enc.init, jax.random.key(0))
    assert num_params(shapes['block_00']) == 444_864
    assert num_params(shapes['embed']['patch']) == 9_408
    assert num_params(shapes['embed']['pos']) == 12_480
    assert num_params(shapes['embed']['cls']) == 192
    assert num_params(shapes['norm']) == 384
    assert sorted(shapes) == sorted(['embed', 'norm'] + [block_name(i) for i in range(12)])
    # 12 blocks + embedding + class token + final norm (spec: ~5.36 M).
    assert num_params(shapes) == 12 * 444_864 + 9_408 + 12_480 + 192 + 384


def _np_layernorm(x, p):
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-6) * p['scale'] + p['bias']


def _np_block(x, p, heads):
    """Independent numpy pre-LN transformer block."""
    y = _np_layernorm(x, p['ln_1'])
    a = p['attn']
    q, k, v = (np.einsum('btd,dhf->bthf', y, a[n]['kernel']) + a[n]['bias']
               for n in ('query', 'key', 'value'))
    logits = np.einsum('bqhf,bkhf->bhqk', q, k) / np.sqrt(q.shape[-1])
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    o = np.einsum('bhqk,bkhf->bqhf', w, v)
    x = x + np.einsum('bqhf,hfd->bqd', o, a['out']['kernel']) + a['out']['bias']
    y = _np_layernorm(x, p['ln_2'])
    h = y @ p['fc_1']['kernel'] + p['fc_1']['bias']
    h = 0.5 * h * (1 + erf(h / np.sqrt(2)))   # exact GELU
    return x + h @ p['fc_2']['kernel'] + p['fc_2']['bias']


def test_forward_matches_numpy_reference():
    enc = ViTEncoder(TINY)
    params = jax.tree.map(np.asarray, enc.init(jax.random.key(1)))
    x = np.asarray(jax.random.normal(jax.random.key(2), (2, 8, 8, 3)))
    # Embedding: non-overlapping 4x4 patches, row-major, then cls + pos.
    e = params['embed']
    patches = x.reshape(2, 2, 4, 2, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(2, 4, 48)
    tok = patches @ e['patch']['kernel'].reshape(48, 8) + e['patch']['bias']
    tok = np.concatenate([np.broadcast_to(e['cls'], (2, 1, 8)), tok], 1) + e['pos']
    for i in range(3):
        tok = _np_block(tok, params[block_name(i)], heads=2)
    expected = _np_layernorm(tok[:, 0], params['norm'])
    got = enc.features(params, jnp.asarray(x), 3)
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-5)


def test_segments_compose_and_prefix_runs_only_k_blocks():
    enc = ViTEncoder(TINY)
    params = enc.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(3), (2, 8, 8, 3))
    full = enc.features(params, x, 3)
    split = enc.pool(params, enc.run_segment(params, enc.run_segment(params, x, 0, 1), 1, 3))
    np.testing.assert_allclose(full, split, rtol=1e-6, atol=1e-6)
    # Only the first 2 blocks present: the 2-block encoder still runs.
    partial = {k: v for k, v in params.items() if k != block_name(2)}
    assert enc.features(partial, x, 2).shape == (2, 8)
    assert not np.allclose(enc.features(params, x, 2), full)


def test_init_part_is_deterministic_and_key_dependent():
    enc = ViTEncoder(TINY)
    a = enc.init_part(jax.random.key(0), 'block_01')
    b = enc.init_part(jax.random.key(0), 'block_01')
    c = enc.init_part(jax.random.key(1), 'block_01')
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert not np.allclose(a['fc_1']['kernel'], c['fc_1']['kernel'])
    with pytest.raises(ValueError, match='Unknown ViT part'):
        enc.init_part(jax.random.key(0), 'block_07')


@pytest.mark.parametrize('kwargs, match', [
    (dict(image_size=30, patch_size=4), r'model.patch_size=4: must divide model.image_size=30'),
    (dict(width=10, num_heads=3), r'model.num_heads=3: must divide model.width=10'),
    (dict(depth=0), r'model.depth=0: must be >= 1'),
])
def test_bad_shapes_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ViTEncoder(TINY._replace(**kwargs))
