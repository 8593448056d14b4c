"""Paper-convention GFLOPs: hand counts and the paper's Tables 2-3."""

import jax
import pytest

from lwfedssl_jax import ssl
from lwfedssl_jax.accounting import flops
from lwfedssl_jax.models.vit import VIT_TINY, ViTConfig, ViTEncoder
import backbones   # noqa: E402  (tests/backbones.py)
from lwfedssl_jax.stages import make_stage_plan

SMALL = ViTConfig(image_size=8, patch_size=4, width=8, depth=2, num_heads=2, mlp_dim=16)


def heads_shapes(method, width):
    return jax.eval_shape(lambda k: method.init_heads(k, width), jax.random.key(0))


def test_small_vit_hand_count():
    enc = ViTEncoder(SMALL)
    # T = 4 patches + cls = 5 tokens, D = 8, M = 16.
    assert enc.part_forward_macs('embed') == 4 * 48 * 8                   # 1536
    assert enc.part_forward_macs('block_00') == (4 * 5 * 64 + 2 * 25 * 8
                                                 + 2 * 5 * 8 * 16)        # 2960
    assert enc.part_forward_macs('norm') == 0
    method = ssl.get('mocov3')(proj_hidden=16, proj_dim=4, pred_hidden=16)
    heads = heads_shapes(method, 8)
    assert flops.dense_macs(heads['projector']) == 8 * 16 + 16 * 16 + 16 * 4   # 448
    assert flops.dense_macs(heads['predictor']) == 4 * 16 + 16 * 4             # 128
    lw = make_stage_plan('layerwise', backbone=backbones.vit(2), blocks_per_stage=1, total_rounds=4,
                         head_names=method.head_names)
    e2e = make_stage_plan('e2e', backbone=backbones.vit(2), blocks_per_stage=1, total_rounds=4,
                          head_names=method.head_names)
    # Stage 2 of LW: block_01 + heads trained (x3), embed + block_00 frozen (x1).
    assert flops.per_sample_epoch_macs(enc, lw[1], heads) == 3 * (2960 + 576) + 1536 + 2960
    assert flops.per_sample_epoch_macs(enc, e2e[0], heads) == 3 * (1536 + 2 * 2960 + 576)
    assert flops.per_sample_epoch_macs(enc, e2e[0], heads, samples_per_step=2) == \
        2 * 3 * (1536 + 2 * 2960 + 576)
    # 2 rounds per stage x 3 epochs.
    assert flops.paper_flops(enc, lw, heads, local_epochs=3) == [
        6 * 3 * (1536 + 2960 + 576), 6 * (3 * (2960 + 576) + 1536 + 2960)]


def test_vit_tiny_block_matches_spec():
    assert ViTEncoder(VIT_TINY).part_forward_macs('block_03') == 30_376_320  # 30.38 M


PAPER = {  # (mode, blocks per stage) -> paper GFLOPs (Tables 2 and 3)
    ('e2e', 1): 586, ('layerwise', 1): 139, ('progressive', 1): 318,
    ('layerwise', 2): 180, ('layerwise', 3): 220, ('layerwise', 4): 261,
    ('layerwise', 6): 342, ('progressive', 2): 342, ('progressive', 3): 367,
    ('progressive', 4): 391, ('progressive', 6): 440,
}


@pytest.mark.parametrize('mode, bps', sorted(PAPER))
def test_paper_gflops_within_2_percent(mode, bps):
    enc = ViTEncoder(VIT_TINY)
    method = ssl.get('mocov3')()
    plan = make_stage_plan(mode, backbone=backbones.vit(12), blocks_per_stage=bps, total_rounds=180,
                           head_names=method.head_names)
    total = sum(flops.paper_flops(enc, plan, heads_shapes(method, 192), local_epochs=3))
    assert abs(total / 1e9 / PAPER[mode, bps] - 1) < 0.02
