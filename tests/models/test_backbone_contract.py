"""The backbone contract (models/backbone.py), checked for every entry of
`MODELS` at its `tiny` size: a new backbone is covered without editing this
file. Each backbone's own numbers (parameter counts, MACs by hand, a numpy
forward) are in its test file (test_vit.py, test_resnet.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lwfedssl_jax import export, models, stages
from lwfedssl_jax.models.backbone import Backbone
from lwfedssl_jax.utils.tree import flatten_dict, num_params

NAMES = sorted(models.MODELS)
HEADS = ('projector', 'predictor')


def tiny(name) -> Backbone:
    entry = models.MODELS[name]
    return models.make_backbone({'name': name, **entry.defaults, **entry.tiny})


def images(enc, batch=2):
    s = enc.config_dict()['image_size']
    return jax.random.normal(jax.random.key(7), (batch, s, s, 3))


def all_parts(enc):
    """Every part, adapters included, initialised as part_names orders them."""
    key = jax.random.key(0)
    return {n: enc.init_part(jax.random.fold_in(key, i), n)
            for i, n in enumerate(enc.part_names())}


@pytest.mark.parametrize('name', NAMES)
def test_parts_partition_into_input_blocks_shared_and_adapters(name):
    enc = tiny(name)
    adapters = [a for n in range(1, enc.depth + 1) for a in enc.adapter_parts(n)]
    blocks = [enc.block_part(i) for i in range(enc.depth)]
    assert sorted(enc.part_names()) == sorted(
        list(enc.input_parts) + blocks + list(enc.shared_parts) + adapters)
    assert len(set(enc.part_names())) == len(enc.part_names())
    assert enc.block_parts(0) == tuple(enc.input_parts) + (blocks[0],)
    assert enc.adapter_parts(enc.depth) == ()     # the heads take the full width
    assert enc.head_width == enc.feature_width(enc.depth)
    # init() is the full encoder: part i keyed by fold_in(key, i), no adapter.
    full = enc.init(jax.random.key(0))
    assert sorted(full) == sorted(enc.encoder_parts(enc.depth))
    by_part = all_parts(enc)
    for part in full:
        jax.tree.map(np.testing.assert_array_equal, full[part], by_part[part])


@pytest.mark.parametrize('name', NAMES)
def test_segments_compose_and_widths_match(name):
    enc = tiny(name)
    params, x = all_parts(enc), images(enc)
    whole = enc.run_segment(params, x, 0, enc.depth)
    for k in range(1, enc.depth + 1):   # (start 0 means images: input parts run)
        split = enc.run_segment(params, enc.run_segment(params, x, 0, k), k, enc.depth)
        np.testing.assert_allclose(split, whole, rtol=1e-5, atol=1e-5)
    for n in range(1, enc.depth + 1):
        h = enc.run_segment(params, x, 0, n)
        assert enc.features(params, x, n).shape == (2, enc.feature_width(n))
        # The heads always see head_width, through the stage's adapter if any.
        assert enc.head_input(params, h, n).shape == (2, enc.head_width)
        assert bool(enc.adapter_parts(n)) == (enc.feature_width(n) != enc.head_width)
    # features() reads exactly encoder_parts: nothing else is needed.
    n = max(1, enc.depth - 1)
    only = {p: params[p] for p in enc.encoder_parts(n)}
    np.testing.assert_array_equal(enc.features(only, x, n), enc.features(params, x, n))


@pytest.mark.parametrize('name', NAMES)
def test_gradients_reach_a_trainable_block_and_its_adapter(name):
    enc = tiny(name)
    params, x = all_parts(enc), images(enc, 4)
    top = enc.depth - 1 if enc.depth > 1 else 0
    trained = (enc.block_part(top),) + enc.adapter_parts(top + 1)
    frozen_out = enc.run_segment(params, x, 0, top)

    def loss(sub):
        h = enc.run_segment({**params, **sub}, frozen_out, top, top + 1)
        return jnp.sum(enc.head_input({**params, **sub}, h, top + 1) ** 2)

    grads = jax.grad(loss)({p: params[p] for p in trained})
    for part in trained:
        assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads[part])), part


@pytest.mark.parametrize('name', NAMES)
def test_forward_macs_cover_every_weight_at_least_once(name):
    enc = tiny(name)
    params = all_parts(enc)
    for part in enc.part_names():
        kernels = sum(int(np.prod(v.shape)) for k, v in flatten_dict(params[part]).items()
                      if k.endswith('kernel'))
        macs = enc.part_forward_macs(part)
        assert macs >= kernels, part
    for part in {a for n in range(1, enc.depth + 1) for a in enc.adapter_parts(n)}:
        assert enc.part_forward_macs(part) == num_params(params[part])   # one matmul


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('mode', stages.MODES)
def test_stage_plans_take_their_parts_from_the_backbone(name, mode):
    enc = tiny(name)
    plan = stages.make_stage_plan(mode, backbone=enc, blocks_per_stage=1,
                                  total_rounds=enc.depth, head_names=HEADS)
    shared = tuple(enc.shared_parts) + HEADS
    for s in plan:
        assert s.block_parts == tuple(enc.block_part(i) for i in range(s.num_blocks))
        assert set(s.present) == set(enc.encoder_parts(s.num_blocks)
                                     + enc.adapter_parts(s.num_blocks) + shared)
        assert set(enc.adapter_parts(s.num_blocks)) <= set(s.new) & set(s.exchanged)
    # Every input part and block is created exactly once, an adapter once
    # per stage that needs it.
    created = [p for s in plan for p in s.new if p not in shared]
    adapters = [a for s in plan for a in enc.adapter_parts(s.num_blocks)]
    encoder = [p for p in enc.encoder_parts(enc.depth) if p not in enc.shared_parts]
    assert sorted(created) == sorted(encoder + adapters)


@pytest.mark.parametrize('name', NAMES)
def test_config_round_trip_and_export_format(name, tmp_path):
    enc = tiny(name)
    again = models.make_backbone(enc.config_dict())
    assert again.config_dict() == enc.config_dict()
    assert jax.tree.map(lambda x: x.shape, jax.eval_shape(again.init, jax.random.key(0))) \
        == jax.tree.map(lambda x: x.shape, jax.eval_shape(enc.init, jax.random.key(0)))
    with pytest.raises(ValueError, match='model.nonsense'):
        models.make_backbone({**enc.config_dict(), 'nonsense': 1})
    with pytest.raises(ValueError, match="model.image_size='32': must be of type int"):
        models.make_backbone({**enc.config_dict(), 'image_size': '32'})
    # An exported file rebuilds the same backbone and features.
    params, x = enc.init(jax.random.key(3)), images(enc)
    path = str(tmp_path / 'enc.npz')
    export.write_encoder(path, enc, params, enc.depth, {'step': 0, 'stage': 0, 'mode': 'e2e'})
    loaded, loaded_params, n = export.load_encoder(path)
    assert n == enc.depth and loaded.config_dict() == enc.config_dict()
    np.testing.assert_array_equal(loaded.features(loaded_params, x, n),
                                  enc.features(params, x, n))
