"""Paper Table 10: resources on BloodMNIST (64x64, batch 128).

Paper numbers: paper notes §7.11 (arXiv v4 Table 10), cells copied
verbatim. The runs are Table 9's BloodMNIST rows (share its workdir to
reuse them).
"""

from experiments.studylib.rows import medmnist_row
from experiments.studylib.spec import Column, Study, cells

PAPER = {'e2e': '11.48 (1.00×) | 2705 (1.00×) | 8.45 (1.00×)',
         'lw': '3.10 (0.27×) | 640 (0.24×) | 1.66 (0.20×)',
         'prog': '11.46 (1.00×) | 1468 (0.54×) | 5.09 (0.60×)'}

STUDY = Study(
    name='table10',
    title='Table 10: resources on BloodMNIST (64x64, batch 128)',
    source='paper notes §7.11 (arXiv v4 Table 10)',
    paper_columns=('Mem (GB)', 'GFLOPs', 'Comm (GB)'),
    rows=tuple(medmnist_row('bloodmnist', m, cells(p), baseline='blood_e2e')
               for m, p in PAPER.items()),
    smoke_rows=('blood_e2e', 'blood_lw'),
    columns=(Column('memory', 'Mem (GB)', ratio=True), Column('gflops', 'GFLOPs', ratio=True),
             Column('comm', 'Comm (GB)', ratio=True)),
    accuracy=False,
    notes=('Memory: the paper\'s PyTorch GPU peak against XLA\'s estimate of one client '
           'step: compare the ratios.',),
)
