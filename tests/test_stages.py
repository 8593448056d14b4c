import pytest

import backbones   # noqa: E402  (tests/backbones.py)
from lwfedssl_jax.stages import make_stage_plan

HEADS = ('projector', 'predictor')


def plan(mode, depth=4, bps=1, rounds=8):
    return make_stage_plan(mode, backbone=backbones.vit(depth), blocks_per_stage=bps,
                           total_rounds=rounds, head_names=HEADS)


def test_e2e_is_one_stage_training_everything():
    (s,) = plan('e2e')
    assert s.num_blocks == 4 and s.frozen_blocks == 0 and s.rounds == 8
    assert s.trainable == s.exchanged == s.present == s.new
    assert set(s.present) == {'embed', 'block_00', 'block_01', 'block_02',
                              'block_03', 'norm', 'projector', 'predictor'}
    assert s.frozen == ()


def test_layerwise_trains_only_the_new_group_plus_heads():
    p = plan('layerwise', depth=4, bps=1, rounds=8)
    assert [s.rounds for s in p] == [2, 2, 2, 2]
    assert [s.num_blocks for s in p] == [1, 2, 3, 4]
    assert [s.frozen_blocks for s in p] == [0, 1, 2, 3]
    assert p[0].trainable == ('embed', 'block_00', 'norm') + HEADS
    assert p[2].trainable == ('block_02', 'norm') + HEADS
    assert p[2].frozen == ('embed', 'block_00', 'block_01')
    assert p[2].new == ('block_02',)            # heads and norm carry over
    assert p[0].new == p[0].trainable
    assert all(s.exchanged == s.trainable for s in p)


def test_layerwise_groups_of_two_blocks():
    p = plan('layerwise', depth=6, bps=2, rounds=9)
    assert [s.num_blocks for s in p] == [2, 4, 6]
    assert p[1].trainable == ('block_02', 'block_03', 'norm') + HEADS
    assert p[1].frozen_blocks == 2 and p[1].rounds == 3


def test_progressive_trains_every_present_part():
    p = plan('progressive', depth=4, bps=2, rounds=4)
    assert [s.num_blocks for s in p] == [2, 4]
    assert p[1].trainable == p[1].present == p[1].exchanged
    assert p[1].frozen == () and p[1].frozen_blocks == 0
    assert p[1].new == ('block_02', 'block_03')


def test_paper_table3_rounds_per_stage():
    # R = 180 fixed: R_s = 15, 30, 45, 60, 90 for 1, 2, 3, 4, 6 blocks/stage.
    for bps, rs in [(1, 15), (2, 30), (3, 45), (4, 60), (6, 90)]:
        p = make_stage_plan('layerwise', backbone=backbones.vit(12), blocks_per_stage=bps,
                            total_rounds=180, head_names=HEADS)
        assert len(p) == 12 // bps and {s.rounds for s in p} == {rs}


@pytest.mark.parametrize('kwargs, match', [
    (dict(mode='lw'), r"mode='lw': unknown; choices"),
    (dict(mode='layerwise', bps=5, depth=12), 'must divide the 12 blocks'),
    (dict(mode='layerwise', rounds=6, depth=4), 'multiple of the number of stages'),
])
def test_bad_plans_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plan(**kwargs)
