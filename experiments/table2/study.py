"""Paper Table 2: MoCo v3 / BYOL / SimCLR x e2e / layer-wise / progressive,
the centralised rows, FedU, FedEMA, FedCA (and L-DAWA, not in the paper).

Paper numbers: paper notes §7.3 (arXiv v4 Table 2), cells copied verbatim.
Rows are `configs/table2.py` variants; at cpu scale the three MoCo v3 rows
are `configs/cifar10_cpu.py:mode=<mode>`, the CPU-scale main study.
"""

from experiments.studylib.rows import table2_row
from experiments.studylib.spec import Column, Study, cells

PAPER_COLUMNS = ('Mem (GB)', 'GFLOPs', 'Comm (GB)', 'C-10', 'C-100', 'Tiny-IN',
                 'Caltech-101', 'Avg')
NO_RESOURCES = '– | – | – | '

STUDY = Study(
    name='table2',
    title='Table 2: SSL methods x training modes, and the federated baselines',
    source='paper notes §7.3 (arXiv v4 Table 2)',
    paper_columns=PAPER_COLUMNS,
    scratch=cells('– | – | – | 63.28 | 39.82 | 26.09 | 22.10 | 37.82'),
    rows=(
        table2_row('centralized_mocov3', 'MoCoV3 (Centralized)', cells(
            NO_RESOURCES + '87.22 | 65.97 | 43.08 | 60.61 | 64.22'), group='MoCoV3'),
        table2_row('fedmocov3', 'FedMoCoV3', cells(
            '8.72 (1.00×) | 586 (1.00×) | 8.40 (1.00×) | 83.95 | 62.84 | 41.77 | 54.60 | 60.79'),
            group='MoCoV3', baseline='fedmocov3'),
        table2_row('lw_mocov3', 'LW-FedSSL', cells(
            '2.61 (0.30×) | 139 (0.24×) | 1.66 (0.20×) | 83.43 | 61.65 | 40.00 | 48.33 | 58.35'),
            group='MoCoV3', baseline='fedmocov3'),
        table2_row('prog_mocov3', 'Prog-FedSSL', cells(
            '8.69 (1.00×) | 318 (0.54×) | 5.04 (0.60×) | 86.53 | 65.10 | 40.70 | 61.60 | 63.48'),
            group='MoCoV3', baseline='fedmocov3'),
        table2_row('ldawa', 'L-DAWA (not in the paper)', cells('– | – | – | – | – | – | – | –'),
                   group='MoCoV3', baseline='fedmocov3'),
        table2_row('centralized_byol', 'BYOL (Centralized)', cells(
            NO_RESOURCES + '87.69 | 66.26 | 44.84 | 62.32 | 65.28'), group='BYOL'),
        table2_row('fedbyol', 'FedBYOL', cells(
            '8.72 (1.00×) | 586 (1.00×) | 8.40 (1.00×) | 83.59 | 62.71 | 42.67 | 53.89 | 60.72'),
            group='BYOL', baseline='fedbyol'),
        table2_row('fedu', 'FedU', cells(
            '8.94 (1.03×) | 586 (1.00×) | 8.40 (1.00×) | 83.50 | 62.61 | 42.61 | 53.88 | 60.65'),
            group='BYOL', baseline='fedbyol'),
        table2_row('fedema', 'FedEMA', cells(
            '8.96 (1.03×) | 586 (1.00×) | 8.40 (1.00×) | 81.35 | 60.50 | 41.20 | 48.26 | 57.83'),
            group='BYOL', baseline='fedbyol'),
        table2_row('lw_byol', 'LW-FedSSL', cells(
            '2.61 (0.30×) | 139 (0.24×) | 1.66 (0.20×) | 84.20 | 61.29 | 40.56 | 47.77 | 58.45'),
            group='BYOL', baseline='fedbyol'),
        table2_row('prog_byol', 'Prog-FedSSL', cells(
            '8.69 (1.00×) | 318 (0.54×) | 5.04 (0.60×) | 87.51 | 66.32 | 43.16 | 62.19 | 64.80'),
            group='BYOL', baseline='fedbyol'),
        table2_row('centralized_simclr', 'SimCLR (Centralized)', cells(
            NO_RESOURCES + '87.49 | 65.64 | 43.54 | 61.12 | 64.45'), group='SimCLR'),
        table2_row('fedsimclr', 'FedSimCLR', cells(
            '14.39 (1.00×) | 1169 (1.00×) | 8.03 (1.00×) | 84.38 | 62.41 | 42.49 | 53.45 | 60.68'),
            group='SimCLR', baseline='fedsimclr'),
        table2_row('fedca', 'FedCA', cells(
            '16.37 (1.14×) | 1299 (1.11×) | 30.69 (3.82×) | 85.30 | 63.68 | 43.04 | 57.75 | 62.44'),
            group='SimCLR', baseline='fedsimclr'),
        table2_row('lw_simclr', 'LW-FedSSL', cells(
            '8.59 (0.60×) | 278 (0.24×) | 1.29 (0.16×) | 84.27 | 61.74 | 40.70 | 48.25 | 58.74'),
            group='SimCLR', baseline='fedsimclr'),
        table2_row('prog_simclr', 'Prog-FedSSL', cells(
            '14.36 (1.00×) | 635 (0.54×) | 4.68 (0.58×) | 86.38 | 63.77 | 41.60 | 62.08 | 63.46'),
            group='SimCLR', baseline='fedsimclr'),
    ),
    smoke_rows=('fedmocov3', 'lw_mocov3', 'prog_mocov3'),
    columns=(Column('memory', 'Mem (GB)', ratio=True), Column('gflops', 'GFLOPs', ratio=True),
             Column('comm', 'Comm (GB)', ratio=True)),
    notes=(
        'Memory: the paper reports PyTorch GPU peaks, ours is XLA\'s estimate of one client '
        'step (f32 on CPU): compare the ratios, not the gigabytes.',
        'Centralised rows: one client holding all the data, the federated rows\' rounds x '
        'local epochs (the paper gives no epochs); the paper prints no resources for them.',
        'Scratch: kNN / probe of a randomly initialised encoder (`random_encoder_eval`); '
        'the paper fine-tunes it (fine-tuning columns appear once `lwfedssl_jax.evaluate '
        '--protocol finetune` results exist).',
        'L-DAWA (Rehman et al.) is not in the paper: "–" everywhere.',
    ),
)
