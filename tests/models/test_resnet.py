import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lwfedssl_jax.errors import ConfigError
from lwfedssl_jax.models import backbone, conv
from lwfedssl_jax.models.resnet import ResNetConfig, ResNetEncoder

# Small enough to run on CPU in a blink; numbers that need the real width
# use `jax.eval_shape` (nothing allocated) or pure arithmetic.
SMALL = ResNetConfig(image_size=16, stem='cifar', width=8, norm_groups=2)
LAYERS = ('layer1', 'layer2', 'layer3', 'layer4')


def _count(tree) -> int:
    """Scalars in a pytree of arrays or ShapeDtypeStructs."""
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


def _part_shapes(enc, name):
    return jax.eval_shape(lambda k: enc.init_part(k, name), jax.random.key(0))


# ------------------------------------------------------------ param counts
def test_parameter_counts_match_torchvision_resnet18():
    enc = ResNetEncoder(ResNetConfig(image_size=224, stem='imagenet', width=64,
                                     norm_groups=32))
    counts = {n: _count(_part_shapes(enc, n)) for n in ('stem',) + LAYERS}
    # Each GroupNorm has 2C affine parameters, like torchvision's BatchNorm.
    assert counts['stem'] == 7 * 7 * 3 * 64 + 2 * 64 == 9_536
    # layer1: 4 convs 3x3x64x64 + 4 norms.
    assert counts['layer1'] == 4 * 9 * 64 * 64 + 4 * 2 * 64 == 147_968
    # layer2..4 (C_in -> C): conv 3x3 C_in->C, 3 convs 3x3 C->C, 1x1 C_in->C
    # shortcut, 5 norms.
    for name, c_in, c in (('layer2', 64, 128), ('layer3', 128, 256),
                          ('layer4', 256, 512)):
        assert counts[name] == (9 * c_in * c + 3 * 9 * c * c + c_in * c
                                + 5 * 2 * c), name
    assert counts['layer2'] == 525_568
    assert counts['layer3'] == 2_099_712
    assert counts['layer4'] == 8_393_728
    # torchvision resnet18: 11,689,512 parameters, minus fc (512*1000 + 1000).
    assert sum(counts.values()) == 11_689_512 - 513_000 == 11_176_512
    assert _count(jax.eval_shape(enc.init, jax.random.key(0))) == 11_176_512

    cifar = ResNetEncoder(ResNetConfig(image_size=32, stem='cifar', width=64,
                                       norm_groups=32))
    total = _count(jax.eval_shape(cifar.init, jax.random.key(0)))
    assert total == 11_176_512 - (7 * 7 - 3 * 3) * 3 * 64 == 11_168_832
    assert _count(_part_shapes(cifar, 'stem')) == 3 * 3 * 3 * 64 + 2 * 64


def test_adapters_are_bias_free_linear_maps_to_512():
    enc = ResNetEncoder(ResNetConfig())
    assert enc.head_width == 512
    assert [enc.adapter_parts(n) for n in (1, 2, 3, 4)] == [
        ('adapter_064',), ('adapter_128',), ('adapter_256',), ()]
    for name, w in (('adapter_064', 64), ('adapter_128', 128), ('adapter_256', 256)):
        shapes = _part_shapes(enc, name)
        assert jax.tree.map(lambda s: s.shape, shapes) == {'kernel': (w, 512)}
    # Adapter names follow the feature width (here 16, 32, 64 -> 128).
    small = ResNetEncoder(ResNetConfig(width=16, norm_groups=4))
    assert [small.adapter_parts(n) for n in (1, 2, 3, 4)] == [
        ('adapter_016',), ('adapter_032',), ('adapter_064',), ()]
    assert small.head_width == 128


def test_part_names_order_and_init():
    enc = ResNetEncoder(SMALL)
    assert enc.part_names() == ('stem', 'layer1', 'layer2', 'layer3', 'layer4',
                                'adapter_008', 'adapter_016', 'adapter_032')
    assert enc.input_parts == ('stem',) and enc.shared_parts == ()
    assert not enc.blocks_keep_shape and enc.depth == 4 and enc.name == 'resnet18'
    assert [enc.block_part(i) for i in range(4)] == list(LAYERS)
    assert enc.block_parts(0) == ('stem', 'layer1')
    assert enc.block_parts(2) == ('layer3',)
    assert enc.encoder_parts(2) == ('stem', 'layer1', 'layer2')
    assert sorted(jax.eval_shape(enc.init, jax.random.key(0))) == sorted(
        ('stem',) + LAYERS)
    with pytest.raises(ValueError):
        enc.init_part(jax.random.key(0), 'layer5')
    with pytest.raises(ValueError):
        enc.init_part(jax.random.key(0), 'adapter_064')   # = head width here


def test_conv_init_is_he_normal_fan_out():
    enc = ResNetEncoder(ResNetConfig(width=64, norm_groups=32))
    p = enc.init_part(jax.random.key(3), 'layer4')
    k = np.asarray(p['block2']['conv2']['kernel'])            # 3x3x512x512
    assert k.shape == (3, 3, 512, 512)
    assert abs(k.std() / np.sqrt(2.0 / (9 * 512)) - 1) < 0.02
    assert abs(k.mean()) < 1e-3
    norm = p['block1']['down_norm']
    np.testing.assert_array_equal(norm['scale'], np.ones(512))
    np.testing.assert_array_equal(norm['bias'], np.zeros(512))
    assert 'bias' not in p['block1']['conv1']


# ------------------------------------------------------------------- MACs
def test_forward_macs_imagenet_stem_32():
    enc = ResNetEncoder(ResNetConfig(image_size=32, stem='imagenet', width=64,
                                     norm_groups=32))
    macs = {n: enc.part_forward_macs(n) for n in ('stem',) + LAYERS}
    # 7x7 stride-2 conv: 16x16 outputs, 64 channels, 7*7*3 inputs each.
    assert macs['stem'] == 16 * 16 * 64 * 7 * 7 * 3 == 2_408_448
    # max-pool -> 8x8; layer1: four 3x3 64->64 convs at 8x8.
    assert macs['layer1'] == 4 * 8 * 8 * 64 * 9 * 64 == 9_437_184
    # layer2 at 4x4: conv 64->128, 3 convs 128->128, 1x1 shortcut 64->128.
    assert macs['layer2'] == (4 * 4 * 128 * (9 * 64 + 3 * 9 * 128 + 64)) == 8_388_608
    assert macs['layer3'] == (2 * 2 * 256 * (9 * 128 + 3 * 9 * 256 + 128)) == 8_388_608
    assert macs['layer4'] == (1 * 1 * 512 * (9 * 256 + 3 * 9 * 512 + 256)) == 8_388_608
    # (The brief said 36,011,264; the parts above sum to 37,011,456.)
    assert sum(macs.values()) == 2_408_448 + 9_437_184 + 3 * 8_388_608 == 37_011_456
    assert enc.part_forward_macs('adapter_064') == 64 * 512
    assert enc.part_forward_macs('adapter_128') == 128 * 512
    assert enc.part_forward_macs('adapter_256') == 256 * 512
    with pytest.raises(ValueError):
        enc.part_forward_macs('fc')


def test_forward_macs_cifar_stem_32():
    enc = ResNetEncoder(ResNetConfig(image_size=32, stem='cifar', width=64,
                                     norm_groups=32))
    macs = {n: enc.part_forward_macs(n) for n in ('stem',) + LAYERS}
    assert macs['stem'] == 32 * 32 * 64 * 27 == 1_769_472
    assert macs['layer1'] == 4 * 32 * 32 * 64 * 576 == 150_994_944
    # layer2 at 16x16: 3x3 64->128 + three 3x3 128->128 + 1x1 64->128.
    assert macs['layer2'] == (16 * 16 * 128 * 576 + 3 * 16 * 16 * 128 * 1152
                              + 16 * 16 * 128 * 64) == 134_217_728
    # layer3 at 8x8: 3x3 128->256 + three 3x3 256->256 + 1x1 128->256.
    assert macs['layer3'] == (8 * 8 * 256 * 1152 + 3 * 8 * 8 * 256 * 2304
                              + 8 * 8 * 256 * 128) == 134_217_728
    # layer4 at 4x4: 3x3 256->512 + three 3x3 512->512 + 1x1 256->512.
    assert macs['layer4'] == (4 * 4 * 512 * 2304 + 3 * 4 * 4 * 512 * 4608
                              + 4 * 4 * 512 * 256) == 134_217_728
    assert sum(macs.values()) == 555_417_600   # the usual ~0.56 GMACs


# ----------------------------------------------------------------- shapes
@pytest.mark.parametrize('stem, side0', [('cifar', 32), ('imagenet', 8)])
def test_segment_shapes(stem, side0):
    enc = ResNetEncoder(ResNetConfig(image_size=32, stem=stem, width=16, norm_groups=4))
    key = jax.random.key(0)
    params = jax.eval_shape(enc.init, key)
    for n in range(1, 5):
        params.update({a: jax.eval_shape(lambda k, a=a: enc.init_part(k, a), key)
                       for a in enc.adapter_parts(n)})
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    stem_out = jax.eval_shape(lambda p, x: enc.run_segment(p, x, 0, 0), params, x)
    assert stem_out.shape == (2, side0, side0, 16)
    for n, (side, width) in enumerate(
            [(side0, 16), (side0 // 2, 32), (side0 // 4, 64), (side0 // 8, 128)], 1):
        h = jax.eval_shape(lambda p, x, n=n: enc.run_segment(p, x, 0, n), params, x)
        assert h.shape == (2, side, side, width), (stem, n)
        assert enc.feature_width(n) == width
        assert jax.eval_shape(enc.pool, params, h).shape == (2, width)
        f = jax.eval_shape(lambda p, h, n=n: enc.head_input(p, h, n), params, h)
        assert f.shape == (2, 128)
        assert enc.adapter_parts(n) == ((f'adapter_{width:03d}',) if n < 4 else ())
    # Without the stem in params, an empty segment from 0 is the identity.
    no_stem = {k: v for k, v in params.items() if k != 'stem'}
    assert jax.eval_shape(lambda p, x: enc.run_segment(p, x, 0, 0), no_stem, x).shape \
        == (2, 32, 32, 3)


# ------------------------------------------------- numbers, second code path
def _np_conv(x, k, stride):
    """Cross-correlation, PyTorch padding (k-1)/2, kernel HWIO, float64."""
    kh = k.shape[0]
    pad = (kh - 1) // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    ho = (x.shape[1] + 2 * pad - kh) // stride + 1
    wo = (x.shape[2] + 2 * pad - kh) // stride + 1
    out = np.zeros((x.shape[0], ho, wo, k.shape[-1]))
    for i in range(kh):
        for j in range(kh):
            out += xp[:, i:i + stride * ho:stride, j:j + stride * wo:stride] @ k[i, j]
    return out


def _np_groupnorm(x, p, groups, eps=1e-6):
    b, h, w, c = x.shape
    g = x.reshape(b, h, w, groups, c // groups)
    mu = g.mean((1, 2, 4), keepdims=True)
    var = g.var((1, 2, 4), keepdims=True)
    return ((g - mu) / np.sqrt(var + eps)).reshape(x.shape) * p['scale'] + p['bias']


def _np_maxpool(x):
    """3x3, stride 2, padding 1 (padded with -inf)."""
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    ho = (x.shape[1] - 1) // 2 + 1
    wo = (x.shape[2] - 1) // 2 + 1
    return np.max([xp[:, i:i + 2 * ho:2, j:j + 2 * wo:2]
                   for i in range(3) for j in range(3)], axis=0)


def _relu(x):
    return np.maximum(x, 0)


def _np_stem(x, p, stem, groups):
    if stem == 'cifar':
        return _relu(_np_groupnorm(_np_conv(x, p['conv']['kernel'], 1), p['norm'], groups))
    y = _relu(_np_groupnorm(_np_conv(x, p['conv']['kernel'], 2), p['norm'], groups))
    return _np_maxpool(y)


def _np_basic_block(x, p, stride, groups):
    y = _relu(_np_groupnorm(_np_conv(x, p['conv1']['kernel'], stride), p['norm1'], groups))
    y = _np_groupnorm(_np_conv(y, p['conv2']['kernel'], 1), p['norm2'], groups)
    if 'down_conv' in p:
        x = _np_groupnorm(_np_conv(x, p['down_conv']['kernel'], stride),
                          p['down_norm'], groups)
    return _relu(x + y)


def _np_layer(x, p, stride, groups):
    x = _np_basic_block(x, p['block1'], stride, groups)
    return _np_basic_block(x, p['block2'], 1, groups)


def _randomise(params, key):
    """Non-trivial GroupNorm affine parameters (they start at 1 and 0)."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [
        leaf + 0.3 * jax.random.normal(k, leaf.shape) if leaf.ndim == 1 else leaf
        for leaf, k in zip(leaves, keys)])


@pytest.mark.parametrize('stem', ['cifar', 'imagenet'])
def test_forward_matches_numpy_reference(stem):
    cfg = ResNetConfig(image_size=32 if stem == 'imagenet' else 16, stem=stem,
                       width=8, norm_groups=2)
    enc = ResNetEncoder(cfg)
    params = _randomise(enc.init(jax.random.key(1)), jax.random.key(4))
    np_params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    x = np.asarray(jax.random.normal(jax.random.key(2), (2, cfg.image_size,
                                                         cfg.image_size, 3)))
    h = _np_stem(x.astype(np.float64), np_params['stem'], stem, 2)
    got = enc.run_segment(params, jnp.asarray(x), 0, 0)
    np.testing.assert_allclose(got, h, rtol=1e-4, atol=1e-4)
    # Stage by stage, each from the reference's input (errors do not add up;
    # a segment from 0 starts at the images).
    for i, name in enumerate(LAYERS):
        got = enc.run_segment(params, jnp.asarray(x if i == 0 else h, jnp.float32),
                              i, i + 1)
        h = _np_layer(h, np_params[name], 1 if i == 0 else 2, 2)
        np.testing.assert_allclose(got, h, rtol=1e-4, atol=1e-4, err_msg=name)
        if i == 1:
            h2 = got
    # The whole encoder in one segment.
    np.testing.assert_allclose(enc.run_segment(params, jnp.asarray(x), 0, 4), h,
                               rtol=1e-4, atol=1e-4)
    # Pool and adapter.
    adapter = enc.init_part(jax.random.key(5), 'adapter_016')
    f = enc.head_input({**params, 'adapter_016': adapter}, h2, 2)
    np.testing.assert_allclose(
        f, np.asarray(h2).mean((1, 2)) @ np.asarray(adapter['kernel']), rtol=1e-5,
        atol=1e-6)
    np.testing.assert_allclose(enc.pool(params, got), np.asarray(got).mean((1, 2)),
                               rtol=1e-6)
    np.testing.assert_array_equal(enc.head_input(params, got, 4), enc.pool(params, got))


def test_segments_compose():
    enc = ResNetEncoder(SMALL)
    params = enc.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
    full = enc.run_segment(params, x, 0, 4)
    mid = enc.run_segment(params, x, 0, 2)
    np.testing.assert_allclose(enc.run_segment(params, mid, 2, 4), full,
                               rtol=1e-5, atol=1e-6)
    # An empty segment past the stem is the identity.
    assert enc.run_segment(params, mid, 2, 2) is mid
    np.testing.assert_allclose(enc.features(params, x, 4), full.mean((1, 2)),
                               rtol=1e-6)


def test_grad_through_trainable_stage_and_adapter():
    enc = ResNetEncoder(SMALL)
    params = enc.init(jax.random.key(0))
    params['adapter_016'] = enc.init_part(jax.random.key(1), 'adapter_016')
    x = jax.random.normal(jax.random.key(2), (2, 16, 16, 3))
    frozen = enc.run_segment(params, x, 0, 1)

    @jax.jit
    def loss(trainable, h):
        out = enc.run_segment(trainable, h, 1, 2)
        return jnp.sum(enc.head_input(trainable, out, 2) ** 2)

    grads = jax.grad(loss)({k: params[k] for k in ('layer2', 'adapter_016')}, frozen)
    assert sorted(grads) == ['adapter_016', 'layer2']
    for g in jax.tree.leaves(grads):
        assert np.all(np.isfinite(g))
    assert float(jnp.abs(grads['adapter_016']['kernel']).sum()) > 0


# ------------------------------------------------------------- validation
@pytest.mark.parametrize('fields, key', [
    (dict(stem='resnet'), 'model.stem'),
    (dict(width=48, norm_groups=32), 'model.norm_groups'),
    (dict(width=16, norm_groups=0), 'model.norm_groups'),
    (dict(width=0), 'model.width'),
    (dict(image_size=36), 'model.image_size'),
    (dict(image_size=48, stem='imagenet'), 'model.image_size'),
    (dict(image_size=0), 'model.image_size'),
])
def test_validate_errors(fields, key):
    with pytest.raises(ConfigError) as err:
        ResNetEncoder(ResNetConfig(**fields))
    assert err.value.key == key
    with pytest.raises(ConfigError) as err:
        backbone.make_backbone({'name': 'resnet18', **ResNetConfig(**fields)._asdict()})
    assert err.value.key == key


def test_valid_configs_and_registry():
    ResNetEncoder(ResNetConfig(image_size=64, stem='imagenet', width=32, norm_groups=16))
    ResNetEncoder(ResNetConfig(image_size=8, stem='cifar', width=3, norm_groups=3))
    assert backbone.model_fields('resnet18') == {
        'image_size': 32, 'stem': 'cifar', 'width': 64, 'norm_groups': 32}
    enc = ResNetEncoder(SMALL)
    again = backbone.make_backbone(enc.config_dict())
    assert isinstance(again, ResNetEncoder) and again.cfg == SMALL
    assert enc.config_dict() == {'name': 'resnet18', 'image_size': 16, 'stem': 'cifar',
                                 'width': 8, 'norm_groups': 2}


def test_keep_is_refused():
    enc = ResNetEncoder(SMALL)
    params = enc.init(jax.random.key(0))
    x = jnp.zeros((1, 16, 16, 3))
    for keep in (jnp.array([True, True]), (True, True)):
        with pytest.raises(ValueError, match='shape-preserving'):
            enc.run_segment(params, x, 0, 2, keep)


# ------------------------------------------------------------ determinism
def test_init_is_deterministic():
    enc = ResNetEncoder(SMALL)
    key = jax.random.key(7)
    for name in enc.part_names():
        a = enc.init_part(key, name)
        b = enc.init_part(key, name)
        jax.tree.map(np.testing.assert_array_equal, a, b)
        c = enc.init_part(jax.random.key(8), name)
        assert any(not np.array_equal(u, v) for u, v in
                   zip(jax.tree.leaves(a), jax.tree.leaves(c)) if u.ndim > 1), name
    # The full init gives part i the key fold_in(key, i) (part_names order).
    full = enc.init(key)
    for i, name in enumerate(enc.part_names()[:5]):
        jax.tree.map(np.testing.assert_array_equal, full[name],
                     enc.init_part(jax.random.fold_in(key, i), name))
    # Different parts with the same key differ (same-shaped layer1 blocks).
    l1 = full['layer1']
    assert not np.array_equal(l1['block1']['conv1']['kernel'],
                              l1['block2']['conv1']['kernel'])
    assert not np.array_equal(full['layer3']['block2']['conv2']['kernel'][..., :32, :],
                              full['layer4']['block2']['conv2']['kernel'][..., :32, :32])


@pytest.mark.parametrize('side, kernel, stride', [(8, 3, 1), (8, 3, 2), (8, 1, 2), (2, 3, 1),
                                                  (16, 7, 2)])
def test_conv_and_its_gradients_equal_xlas_plain_convolution(side, kernel, stride):
    """The CPU work-arounds (patches x matmul on small maps, patches x
    gradient for the weights) against `lax.conv_general_dilated` and its
    autodiff, a second code path."""
    x = jax.random.normal(jax.random.key(0), (2, side, side, 4))
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, 4, 5))
    pad = ((kernel - 1) // 2,) * 2

    def plain(x, w):
        return jnp.sum(jnp.sin(jax.lax.conv_general_dilated(
            x, w, (stride, stride), (pad, pad), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))))

    def ours(x, w):
        return jnp.sum(jnp.sin(conv.conv2d(x, w, stride)))

    np.testing.assert_allclose(ours(x, w), plain(x, w), rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.grad(ours, (0, 1))(x, w), jax.grad(plain, (0, 1))(x, w)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
