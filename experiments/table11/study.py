"""Paper Table 11: input size and patch size (BloodMNIST).

Paper numbers: paper notes §7.12 (arXiv v4 Table 11), cells copied verbatim,
with the paper's two typos marked '*'. The 64/4 rows are Table 9's
BloodMNIST rows; the others read `bloodmnist_128.npz` / `bloodmnist_224.npz`.
At cpu and smoke scale each pair becomes image / 4 px with a 4 x 4 patch
grid (16/4, 32/8, 56/14; configs/medmnist.py): the paper's 256 or 196
patches cost hours per row on 2 CPU cores.
"""

from experiments.studylib.rows import MEDMNIST_FINETUNE_METRICS, medmnist_row
from experiments.studylib.spec import Column, Study, cells

SETTINGS = (
    ('64×64, p4, 256 patches', '', 64, 4, {
        'e2e': '11.48 (1.00×) | 2705 (1.00×) | 8.45 (1.00×) | 91.18 | 90.84 | 90.68 | 90.82',
        'lw': '3.10 (0.27×) | 640 (0.24×) | 1.66 (0.20×) | 92.90 | 93.15 | 92.76 | 93.20',
        'prog': '11.46 (1.00×) | 1468 (0.54×) | 5.09 (0.60×) | 94.12 | 93.73 | 93.77 | 93.62'}),
    ('128×128, p8, 256 patches', 'i128', 128, 8, {
        'e2e': '11.54 (1.00×) | 2717 (1.00×) | 8.48 (1.00×) | 89.72 | 89.77 | 89.53 | 89.61',
        'lw': '3.15 (0.27×) | 645 (0.24×) | 1.66 (0.20×) | 92.16 | 92.23 | 92.03 | 92.03',
        'prog': '11.52 (1.00×) | 1479 (0.54×) | 5.13 (0.60×) | 94.41 | 93.65 | 93.87 | 93.61'}),
    ('224×224, p16, 196 patches', 'i224', 224, 16, {
        'e2e': '8.88 (1.00×) | 2028 (1.00×) | 8.62 (1.00×) | 90.20 | 90.21 | 89.94 | 90.05',
        'lw': '2.84 (3.12×)* | 487 (0.24×) | 1.67 (0.19×) | 93.16 | 93.01 | 92.88 | 92.80',
        'prog': '8.87 (1.00×) | 2028 (0.55×)* | 5.26 (0.61×) | 95.23 | 95.26 | 95.13 | 95.14'}),
)

STUDY = Study(
    name='table11',
    title='Table 11: input size and patch size (BloodMNIST)',
    source='paper notes §7.12 (arXiv v4 Table 11)',
    paper_columns=('Mem (GB)', 'GFLOPs', 'Comm (GB)', 'Prec', 'Rec', 'F1', 'Acc'),
    rows=tuple(
        medmnist_row('bloodmnist', m, cells(p), variant=variant, image_size=image,
                     patch_size=patch, group=group,
                     baseline='_'.join(filter(None, ('blood', variant, 'e2e'))))
        for group, variant, image, patch, by_mode in SETTINGS for m, p in by_mode.items()),
    smoke_rows=('blood_e2e', 'blood_lw'),
    columns=(Column('memory', 'Mem (GB)', ratio=True), Column('gflops', 'GFLOPs', ratio=True),
             Column('comm', 'Comm (GB)', ratio=True)),
    finetune_metrics=MEDMNIST_FINETUNE_METRICS,
    notes=('* printed so in the paper and look like typos (notes §7.12): 2.84 / 8.88 = 0.32x, '
           'not 3.12x; Prog\'s GFLOPs should be about 1115-1123 to match its own 0.55x.',),
)
