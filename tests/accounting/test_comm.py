"""Communication counted from the engine's round function (paper §7.1)."""

import jax.numpy as jnp
import pytest

from configs import cifar10_vit_tiny
from lwfedssl_jax import resources
from lwfedssl_jax.accounting import comm

# Hand counts for ViT-Tiny + MoCo v3 heads (float32, 4 bytes).
BLOCK = 444_864
EMBED = 9_408 + 12_480 + 192           # patch conv + position + class token
NORM = 384
PROJ = 192 * 512 + 1024 + 512 * 512 + 1024 + 512 * 256   # BN affine, last BN none
PRED = 256 * 512 + 1024 + 512 * 256             # ViT predictor: last BN, no bias
HEADS = NORM + PROJ + PRED


def test_round_bytes_by_hand():
    frozen = {'a': jnp.zeros(3)}
    exchanged = {'b': jnp.zeros((2, 2))}
    assert comm.round_bytes(frozen, exchanged, exchanged, 'default') == (16, 16)
    assert comm.round_bytes(frozen, exchanged, exchanged, 'worst_case') == (28, 16)
    with pytest.raises(ValueError, match='download policy'):
        comm.round_bytes(frozen, exchanged, exchanged, 'best_case')
    assert comm.paper_gb(2 ** 20 * 1000) == 1.0


def predict(mode, bps=1):
    c = cifar10_vit_tiny.get_config(f'mode={mode},blocks_per_stage={bps}')
    c.log.step_flops = 'none'   # communication needs tracing only
    return resources.predict(c)['resources']


def test_e2e_and_layerwise_reproduce_paper_tables_2_and_5():
    e2e = predict('e2e')
    assert e2e['bytes_down'] == e2e['bytes_up'] == 180 * 4 * (12 * BLOCK + EMBED + HEADS)
    assert round(e2e['comm_paper_gb'], 2) == 8.40
    lw = predict('layerwise')
    assert lw['bytes_down'] == lw['bytes_up'] == 15 * 4 * (12 * (BLOCK + HEADS) + EMBED)
    assert abs(lw['comm_paper_gb'] - 1.66) < 0.01
    # Worst case: every present block downloaded every round (Table 5: 3.35).
    frozen = sum(15 * 4 * (EMBED + s * BLOCK) for s in range(1, 12))
    assert lw['bytes_down_worst_case'] == lw['bytes_down'] + frozen
    assert abs(lw['comm_worst_case_paper_gb'] - 3.35) < 0.01
    assert lw['stage_end_broadcast_bytes'] == 4 * (EMBED + 11 * BLOCK)
    # Every client takes part in every round: each catches up once per stage
    # on the newly frozen parts, which is what the stage-end broadcast sends.
    assert lw['catch_up_bytes'] == lw['stage_end_broadcast_bytes']


def test_catch_up_by_hand():
    mean, held = comm.catch_up([0, 2, 0], [0, 1], [10, 20, 30])
    assert mean == (60 + 30) / 2 and held == [3, 3, 0]
    mean, held = comm.catch_up(held, [1, 2], [10, 20, 30, 40])
    assert mean == (40 + 100) / 2 and held == [3, 4, 4]


def test_catch_up_with_partial_participation_is_bounded_by_the_worst_case():
    c = cifar10_vit_tiny.get_config('mode=layerwise')
    c.log.step_flops = 'none'
    c.fl.num_clients, c.fl.clients_per_round = 100, 25
    c.accounting.examples_per_client = 1180   # COCO over 100 clients (Table 7)
    report = resources.predict(c)
    per_round, res = report['per_round'], report['resources']
    for r in per_round:   # downloading every present part covers any catch-up
        assert r['catch_up_bytes'] <= r['bytes_down_worst_case'] - r['bytes_down']
    # Someone first taking part after stage 1 downloads more than one block.
    assert max(r['catch_up_bytes'] for r in per_round) > 4 * (EMBED + BLOCK)
    assert res['catch_up_bytes'] > res['stage_end_broadcast_bytes']


def test_progressive_reproduces_paper_table_2():
    prog = predict('progressive')
    assert prog['bytes_up'] == sum(15 * 4 * ((s + 1) * BLOCK + EMBED + HEADS)
                                   for s in range(12))
    assert abs(prog['comm_paper_gb'] - 5.04) < 0.01


@pytest.mark.slow
@pytest.mark.parametrize('bps, lw_gb, prog_gb', [
    (2, 2.27, 5.35), (3, 2.88, 5.65), (4, 3.49, 5.96), (6, 4.71, 6.57)])
def test_table3_communication(bps, lw_gb, prog_gb):
    stages, rounds = 12 // bps, 180 // (12 // bps)
    lw, prog = predict('layerwise', bps), predict('progressive', bps)
    assert lw['bytes_up'] == rounds * 4 * (stages * (bps * BLOCK + HEADS) + EMBED)
    assert prog['bytes_up'] == sum(rounds * 4 * ((s + 1) * bps * BLOCK + EMBED + HEADS)
                                   for s in range(stages))
    assert abs(prog['comm_paper_gb'] - prog_gb) < 0.01
    # The paper's printed layer-wise rows are not mutually consistent at the
    # 0.01 level: LW(6) - LW(1) = 2 x 4 B x (900 blocks + 75 embeddings) =
    # 3.067 "GB" whatever the heads (they cancel), but its printed rows differ
    # by 4.71 - 1.66 = 3.05 +- 0.01. Our exact count gives 4.721 for 6 blocks
    # per stage (0.011 from the paper); the other rows are within 0.01.
    assert abs(lw['comm_paper_gb'] - lw_gb) < (0.012 if bps == 6 else 0.01)
