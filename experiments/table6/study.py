"""Paper Table 6: add-ons to the staged methods, depth dropout (DD), FedProx
(PA) and MOON (RA); ratios relative to the plain method.

Paper numbers: paper notes §7.7 (arXiv v4 Table 6), cells copied verbatim.
Rows are `configs/tables6_8.py` rows; the plain LW / Prog rows are Table 2's
(same config, `configs/table2.py`: a shared workdir trains them once). The
paper gives none of the add-ons' hyperparameters: depth dropout 0.3
(inferred from the paper's GFLOPs), PA mu 0.01, RA mu 1 and tau 0.5 (MOON's)
are ours (configs/tables6_8.py, configs/common.py ADDON_DEFAULTS).
"""

from experiments.studylib.rows import table2_row, tables6_8_row
from experiments.studylib.spec import Column, Study, cells

LW = {
    'dd': ('LW + DD', '2.49 (0.95×) | 111 (0.80×) | 1.66 (1.00×) | 84.10 | 60.78 | 40.18 | 48.90 | 58.49'),
    'pa': ('LW + PA (FedProx)', '2.63 (1.01×) | 139 (1.00×) | 1.66 (1.00×) | 84.46 | 61.74 | 40.72 | 44.31 | 57.81'),
    'ra': ('LW + RA (MOON)', '2.86 (1.10×) | 318 (2.29×) | 1.66 (1.00×) | 84.31 | 61.69 | 40.18 | 45.29 | 57.87'),
}
PROG = {
    'dd': ('Prog + DD', '5.24 (0.60×) | 233 (0.73×) | 3.97 (0.79×) | 86.69 | 64.41 | 41.59 | 63.46 | 64.04'),
    'pa': ('Prog + PA', '8.72 (1.00×) | 318 (1.00×) | 5.04 (1.00×) | 84.71 | 62.09 | 38.65 | 56.35 | 60.45'),
    'ra': ('Prog + RA', '9.00 (1.04×) | 496 (1.56×) | 5.04 (1.00×) | 87.05 | 66.05 | 42.37 | 62.59 | 64.52'),
}


def _group(prefix: str, plain_label: str, plain_cells: str, addons: dict) -> tuple:
    plain = f'{prefix}_mocov3'
    return (table2_row(plain, plain_label, cells(plain_cells), group=plain_label,
                       baseline=plain),
            *(tables6_8_row(f'{prefix}_{a}', label, cells(paper), group=plain_label,
                            baseline=plain)
              for a, (label, paper) in addons.items()))


STUDY = Study(
    name='table6',
    title='Table 6: add-on mechanisms (ratios relative to the plain method)',
    source='paper notes §7.7 (arXiv v4 Table 6)',
    paper_columns=('Mem (GB)', 'GFLOPs', 'Comm (GB)', 'C-10', 'C-100', 'Tiny-IN', 'Caltech',
                   'Avg'),
    rows=(
        *_group('lw', 'LW-FedSSL', '2.61 (1.00×) | 139 (1.00×) | 1.66 (1.00×) | 83.43 | 61.65 '
                '| 40.00 | 48.33 | 58.35', LW),
        *_group('prog', 'Prog-FedSSL', '8.69 (1.00×) | 318 (1.00×) | 5.04 (1.00×) | 86.53 | '
                '65.10 | 40.70 | 61.60 | 63.48', PROG),
    ),
    smoke_rows=('lw_mocov3', 'lw_dd'),
    columns=(Column('memory', 'Mem (GB)', ratio=True), Column('gflops', 'GFLOPs', ratio=True),
             Column('comm', 'Comm (GB)', ratio=True)),
    notes=('Depth-dropout memory: one compiled step holds buffers for every block, whichever '
           'are skipped at run time, so XLA\'s step memory does not fall '
           '(experiments/addons/README.md).',),
)
