"""Paper Table 3: blocks added per stage (MoCo v3, R = 180 rounds fixed).

Paper numbers: paper notes §7.4 (arXiv v4 Table 3), cells copied verbatim.
Rows are `configs/table2.py` rows with `blocks_per_stage`. The paper's 1, 2,
3, 4 and 6 blocks per stage divide its depth of 12; the cpu and smoke ViTs
have 4 and 2 blocks, so 3, 4 and 6 exist at paper scale only (4 of 4, or 2
of 2 at smoke, is a single stage: e2e's plan).
"""

from experiments.studylib.rows import table2_row
from experiments.studylib.spec import Column, Study, cells

PAPER_COLUMNS = ('Layers/stage', 'S', 'R_s', 'Mem (GB)', 'GFLOPs', 'Comm (GB)', 'C-10',
                 'C-100', 'Tiny-IN', 'Caltech', 'Avg')

LW = {
    1: '1 | 12 | 15 | 2.61 (0.30×) | 139 (0.24×) | 1.66 (0.20×) | 83.43 | 61.65 | 40.00 | 48.33 | 58.35',
    2: '2 | 6 | 30 | 3.12 (0.36×) | 180 (0.31×) | 2.27 (0.27×) | 84.85 | 62.23 | 40.11 | 56.19 | 60.84',
    3: '3 | 4 | 45 | 3.67 (0.42×) | 220 (0.38×) | 2.88 (0.34×) | 85.32 | 63.07 | 40.28 | 58.48 | 61.79',
    4: '4 | 3 | 60 | 4.23 (0.48×) | 261 (0.45×) | 3.49 (0.42×) | 85.54 | 64.13 | 40.71 | 58.64 | 62.26',
    6: '6 | 2 | 90 | 5.34 (0.61×) | 342 (0.58×) | 4.71 (0.56×) | 86.58 | 66.18 | 42.79 | 62.72 | 64.57',
}
PROG = {
    1: '1 | 12 | 15 | 8.69 (1.00×) | 318 (0.54×) | 5.04 (0.60×) | 86.53 | 65.10 | 40.70 | 61.60 | 63.48',
    2: '2 | 6 | 30 | 8.69 (1.00×) | 342 (0.58×) | 5.35 (0.64×) | 86.57 | 65.39 | 42.00 | 62.84 | 64.20',
    3: '3 | 4 | 45 | 8.69 (1.00×) | 367 (0.63×) | 5.65 (0.67×) | 86.61 | 65.73 | 42.13 | 63.52 | 64.50',
    4: '4 | 3 | 60 | 8.69 (1.00×) | 391 (0.67×) | 5.96 (0.71×) | 87.33 | 65.80 | 43.12 | 62.56 | 64.70',
    6: '6 | 2 | 90 | 8.69 (1.00×) | 440 (0.75×) | 6.57 (0.78×) | 88.08 | 66.78 | 43.80 | 64.21 | 65.72',
}
# Where each blocks-per-stage setting exists (see the module docstring).
SCALES_OF = {1: ('smoke', 'cpu', 'paper'), 2: ('smoke', 'cpu', 'paper'), 3: ('paper',),
             4: ('paper',), 6: ('paper',)}


def _staged(prefix: str, label: str, paper: dict) -> tuple:
    return tuple(
        table2_row(f'{prefix}_mocov3' if k == 1 else f'{prefix}_mocov3_bps{k}', label,
                   cells(paper[k]), row=f'{prefix}_mocov3', blocks_per_stage=k,
                   group=label, baseline='fedmocov3', scales=SCALES_OF[k])
        for k in sorted(paper))


STUDY = Study(
    name='table3',
    title='Table 3: blocks added per stage (MoCo v3)',
    source='paper notes §7.4 (arXiv v4 Table 3)',
    paper_columns=PAPER_COLUMNS,
    rows=(
        table2_row('fedmocov3', 'FedMoCoV3', cells(
            '– | – | – | 8.72 (1.00×) | 586 (1.00×) | 8.40 (1.00×) | 83.95 | 62.84 | 41.77 '
            '| 54.60 | 60.79'), group='FedMoCoV3', baseline='fedmocov3'),
        *_staged('lw', 'LW-FedSSL', LW),
        *_staged('prog', 'Prog-FedSSL', PROG),
    ),
    smoke_rows=('fedmocov3', 'lw_mocov3', 'lw_mocov3_bps2'),
    columns=(Column('blocks_per_stage', 'Layers/stage'), Column('stages', 'S'),
             Column('rounds_per_stage', 'R_s'), Column('memory', 'Mem (GB)', ratio=True),
             Column('gflops', 'GFLOPs', ratio=True), Column('comm', 'Comm (GB)', ratio=True)),
    notes=(
        'blocks / stage 1 is Table 2\'s row (same name and config: a shared workdir trains '
        'it once).',
        'At smoke scale (2 blocks) 2 blocks per stage is one stage, as e2e; at cpu scale '
        '(4 blocks) it is 2 stages of half the rounds each.',
    ),
)
