"""Paper Fig. 6: client divergence per round, 25 of 100 clients per round.

Paper notes §7.9: at the end of each round a random client is picked and
its mean L2 distance to every other client's weights is plotted. Read off
the curves: FedMoCoV3 falls from about 0.15 to 0.10-0.11; Prog-FedSSL
starts at about 0.08 and climbs to about 0.11; LW-FedSSL starts at about
0.08, drops sharply after the first stage and decays stepwise to near 0.
The runs are Table 7's 25/100 rows (share its workdir to reuse them); the
curve is the engine's per-round `divergence` (metrics.jsonl).
"""

from experiments.studylib.rows import tables6_8_row
from experiments.studylib.spec import Column, Study, cells

STUDY = Study(
    name='fig6',
    title='Fig. 6: client divergence per round (25 of 100 clients per round)',
    source='paper notes §7.9 (arXiv v4 Fig. 6, values read off the curves)',
    paper_columns=('start', 'end of stage 1', 'end'),
    rows=(
        tables6_8_row('part25_fedmocov3', 'FedMoCoV3', cells('≈ 0.15 | – | ≈ 0.10–0.11')),
        tables6_8_row('part25_lw', 'LW-FedSSL', cells(
            '≈ 0.08 | drops sharply | stepwise decay to ≈ 0')),
        tables6_8_row('part25_prog', 'Prog-FedSSL', cells('≈ 0.08 | – | ≈ 0.11')),
    ),
    smoke_rows=('part25_lw',),
    columns=(Column('divergence_first', 'start'), Column('divergence_stage1', 'end of stage 1'),
             Column('divergence_last', 'end')),
    accuracy=False,
    figures=('fig6_divergence',),
    notes=('Which parameters enter the paper\'s distance is not stated. Ours: the L2 distance '
           'of the whole present models over sqrt(parameters), a per-parameter RMS; only '
           'exchanged parts differ between clients, so layer-wise divergence shrinks as its '
           'frozen share grows (`federated/round.py` client_divergence).',),
)
