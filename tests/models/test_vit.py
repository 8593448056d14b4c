import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from lwfedssl_jax.models.vit import (VIT_TINY, Block, Embed, ViTConfig, ViTEncoder,
                                     block_forward, block_name, embed_forward,
                                     sincos_position_embedding)
from lwfedssl_jax.utils.tree import num_params

TINY = ViTConfig(image_size=8, patch_size=4, width=8, depth=3, num_heads=2,
                 mlp_dim=16)


def test_vit_tiny_parameter_counts_match_spec():
    enc = ViTEncoder(VIT_TINY._replace(pos_embed='learned'))
    shapes = jax.eval_shape(enc.init, jax.random.key(0))
    assert num_params(shapes['block_00']) == 444_864
    assert num_params(shapes['embed']['patch']) == 9_408
    assert num_params(shapes['embed']['pos']) == 12_480
    assert num_params(shapes['embed']['cls']) == 192
    assert num_params(shapes['norm']) == 384
    assert sorted(shapes) == sorted(['embed', 'norm'] + [block_name(i) for i in range(12)])
    # 12 blocks + embedding + class token + final norm (spec: ~5.36 M).
    assert num_params(shapes) == 12 * 444_864 + 9_408 + 12_480 + 192 + 384
    # MoCo v3's fixed sine-cosine table is a constant, not a parameter.
    fixed = jax.eval_shape(ViTEncoder(VIT_TINY).init, jax.random.key(0))
    assert sorted(fixed['embed']) == ['cls', 'patch']
    assert num_params(fixed) == num_params(shapes) - 12_480


def test_sincos_table_matches_moco_v3_formula():
    """Element by element, as MoCo v3's build_2d_sincos_position_embedding
    lays it out (its meshgrid puts the row index in the first half)."""
    grid, width = 3, 8
    table = sincos_position_embedding(grid, width)
    assert table.shape == (1, 1 + grid * grid, width)
    np.testing.assert_array_equal(table[0, 0], 0)
    quarter = width // 4
    for y in range(grid):
        for x in range(grid):
            row = table[0, 1 + y * grid + x]
            for i in range(quarter):
                w = 1 / 10000 ** (i / quarter)
                np.testing.assert_allclose(
                    [row[i], row[quarter + i], row[2 * quarter + i], row[3 * quarter + i]],
                    [np.sin(y * w), np.cos(y * w), np.sin(x * w), np.cos(x * w)], atol=1e-6)


def test_patch_kernel_uses_the_fan_of_a_3_p_p_patch():
    enc = ViTEncoder(VIT_TINY)
    kernel = np.asarray(enc.init_part(jax.random.key(0), 'embed')['patch']['kernel'])
    bound = np.sqrt(6 / (3 * 4 * 4 + 192))            # MoCo v3: fan_in 48, fan_out 192
    assert kernel.shape == (4, 4, 3, 192)
    assert np.abs(kernel).max() <= bound
    np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3), rtol=0.02)   # U(-b, b)


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


@pytest.mark.parametrize('pos_embed', ['sincos', 'learned'])
def test_forward_matches_numpy_reference(pos_embed):
    enc = ViTEncoder(TINY._replace(pos_embed=pos_embed))
    params = jax.tree.map(np.asarray, enc.init(jax.random.key(1)))
    # The fixed table for a 2x2 grid of width 8 (2 frequencies: 1, 1/100),
    # written out by hand: [sin y w, cos y w, sin x w, cos x w].
    w = np.array([1.0, 0.01])
    fixed = np.zeros((1, 5, 8))
    for y in range(2):
        for x in range(2):
            fixed[0, 1 + 2 * y + x] = np.concatenate(
                [np.sin(y * w), np.cos(y * w), np.sin(x * w), np.cos(x * w)])
    pos = params['embed']['pos'] if pos_embed == 'learned' else fixed
    x = np.asarray(jax.random.normal(jax.random.key(2), (2, 8, 8, 3)))
    # Embedding: non-overlapping 4x4 patches, row-major, then cls + pos.
    e = params['embed']
    patches = x.reshape(2, 2, 4, 2, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(2, 4, 48)
    tok = patches @ e['patch']['kernel'].reshape(48, 8) + e['patch']['bias']
    tok = np.concatenate([np.broadcast_to(e['cls'], (2, 1, 8)), tok], 1) + pos
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
    (dict(pos_embed='fixed'), r"model.pos_embed='fixed': unknown"),
    (dict(width=6, num_heads=2), r'model.width=6: must be a multiple of 4'),
])
def test_bad_shapes_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ViTEncoder(TINY._replace(**kwargs))


def test_v1_export_files_still_load(tmp_path):
    """A file written by the ViT-only v1 format (meta 'vit', learned positions)."""
    import json

    from lwfedssl_jax import export
    from lwfedssl_jax.utils.tree import flatten_dict
    cfg = TINY._replace(pos_embed='learned')
    enc = ViTEncoder(cfg)
    params = enc.init(jax.random.key(4))
    fields = {k: v for k, v in cfg._asdict().items() if k != 'pos_embed'}
    flat = {k: np.asarray(v) for k, v in flatten_dict(params).items()}
    flat['__meta__'] = np.array(json.dumps({
        'format': 'lwfedssl_jax.encoder.v1', 'vit': fields, 'num_blocks': 3,
        'step': 1, 'stage': 0, 'mode': 'e2e'}))
    np.savez(tmp_path / 'v1.npz', **flat)
    loaded, loaded_params, n = export.load_encoder(str(tmp_path / 'v1.npz'))
    x = jax.random.normal(jax.random.key(5), (2, 8, 8, 3))
    np.testing.assert_array_equal(loaded.features(loaded_params, x, n),
                                  enc.features(params, x, 3))


@pytest.mark.parametrize('pos_embed', ['sincos', 'learned'])
def test_functional_forward_equals_the_flax_modules(pos_embed):
    """`embed_forward` / `block_forward` (the training path) against flax's
    `Embed` / `Block` (which define the parameters): values and gradients."""
    cfg = TINY._replace(pos_embed=pos_embed)
    enc = ViTEncoder(cfg)
    params = enc.init(jax.random.key(0))
    images = jax.random.uniform(jax.random.key(1), (3, 8, 8, 3))

    def flax_path(p):
        x = Embed(cfg).apply({'params': p['embed']}, images)
        for i in range(cfg.depth):
            x = Block(cfg).apply({'params': p[block_name(i)]}, x)
        return x

    def functional(p):
        x = embed_forward(p['embed'], images, cfg)
        for i in range(cfg.depth):
            x = block_forward(p[block_name(i)], x)
        return x

    np.testing.assert_allclose(functional(params), flax_path(params), rtol=1e-5, atol=1e-6)
    loss = lambda f: lambda p: jnp.sum(jnp.sin(f(p)))
    g_ref, g = jax.grad(loss(flax_path))(params), jax.grad(loss(functional))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 g, {k: g_ref[k] for k in g})


def _block_grad_memory() -> int:
    """XLA's compiled memory (bytes) of one block's forward and backward."""
    from lwfedssl_jax.accounting.xla_cost import compiled_cost
    cfg = ViTConfig(image_size=16, patch_size=2, width=64, depth=1, num_heads=2, mlp_dim=256)
    p = ViTEncoder(cfg).init_part(jax.random.key(0), block_name(0))
    x = jax.ShapeDtypeStruct((32, cfg.num_tokens, cfg.width), jnp.float32)
    return compiled_cost(jax.grad(lambda p, x: jnp.sum(jnp.sin(block_forward(p, x)))),
                         p, x).memory_bytes


def test_the_differentiated_gelu_keeps_only_its_input(monkeypatch):
    # Plain `gelu` under `jax.grad` also stores erf(x / sqrt 2), one more
    # [B T, 4D] activation (32 x 65 x 256 floats: 2.1 MB; measured 16.5 MB
    # against 18.6 MB); the values and gradients are the same
    # (test_functional_forward_equals_the_flax_modules).
    from lwfedssl_jax.models import vit
    keeping_input = _block_grad_memory()
    monkeypatch.setattr(vit, '_gelu_keeping_input', vit.gelu)
    plain = _block_grad_memory()
    assert keeping_input < plain - 0.5 * (32 * 65 * 256 * 4), (keeping_input, plain)
