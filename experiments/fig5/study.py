"""Paper Fig. 5: memory and GFLOPs per local epoch, communication per round.

Paper notes §7.1 describe the curves (no table): FedMoCoV3 flat at about
8.7k MB, 1.085 GFLOPs per epoch and 46.7 MB per round; LW-FedSSL about
2.4k -> 2.61k MB and 9.2-9.3 MB per round; Prog-FedSSL about 2.6k -> 8.7k MB
and 9.3 -> 46.7 MB per round. The notes give no per-epoch GFLOPs for the
staged methods ("–"). The runs are Table 2's MoCo v3 rows (share its
workdir to reuse them); the memory of each stage comes from the XLA probe
every study turns on (`log.step_flops=every_stage`).
"""

from experiments.studylib.rows import table2_row
from experiments.studylib.spec import Column, Study, cells

STUDY = Study(
    name='fig5',
    title='Fig. 5: memory and GFLOPs per local epoch, communication per round (MoCo v3)',
    source='paper notes §7.1 (arXiv v4 Fig. 5, values read off the curves)',
    paper_columns=('Memory (MB)', 'GFLOPs / epoch', 'MB / round'),
    rows=(
        table2_row('fedmocov3', 'FedMoCoV3', cells('flat ≈ 8.7k | flat ≈ 1.085 | ≈ 46.7'),
                   baseline='fedmocov3'),
        table2_row('lw_mocov3', 'LW-FedSSL', cells('≈ 2.4k → 2.61k | – | ≈ 9.2–9.3'),
                   baseline='fedmocov3'),
        table2_row('prog_mocov3', 'Prog-FedSSL', cells('≈ 2.6k → 8.7k | – | ≈ 9.3 → 46.7'),
                   baseline='fedmocov3'),
    ),
    smoke_rows=('fedmocov3', 'lw_mocov3', 'prog_mocov3'),
    columns=(Column('memory_first'), Column('memory_last', 'Memory (MB)', ratio=True),
             Column('gflops_epoch_first'), Column('gflops_epoch_last', 'GFLOPs / epoch'),
             Column('mb_round_first'), Column('mb_round_last', 'MB / round', ratio=True)),
    accuracy=False,
    figures=('fig5_resources',),
    notes=('Ratios are last-stage values over the e2e row\'s.',
           'Memory is XLA\'s estimate of one client step (MiB), the paper\'s a PyTorch GPU '
           'peak (MB): compare shapes and ratios.'),
)
