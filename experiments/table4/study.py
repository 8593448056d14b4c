"""Paper Table 4: the staged ResNet-18 encoder (MoCo v3; S = 4, R = 120, R_s = 30).

Paper numbers: paper notes §7.5 (arXiv v4 Table 4), cells copied verbatim.
Rows are `configs/table4.py` modes; at paper scale with torchvision's
ImageNet stem, whose forward cost the paper's GFLOPs count (paper notes
§3.3, experiments/backbones/README.md); the cpu and smoke scales train 16 px
images, where that stem would leave 1 x 1 maps, so they keep the CIFAR stem.
"""

from experiments.studylib.rows import MODE_LABELS, MODES
from experiments.studylib.spec import Column, Row, Study, cells

PAPER = {
    'e2e': '1.83 (1.00×) | 41 (1.00×) | 11.09 (1.00×) | 85.20 | 57.57 | 33.71 | 61.58 | 59.52',
    'lw': '1.59 (0.87×) | 17 (0.40×) | 3.41 (0.31×) | 85.64 | 57.84 | 34.40 | 61.84 | 59.93',
    'prog': '1.81 (0.99×) | 27 (0.67×) | 4.24 (0.38×) | 85.57 | 57.44 | 34.63 | 63.59 | 60.31',
}

STUDY = Study(
    name='table4',
    title='Table 4: ResNet-18 encoder (MoCo v3)',
    source='paper notes §7.5 (arXiv v4 Table 4)',
    paper_columns=('Mem (GB)', 'GFLOPs', 'Comm (GB)', 'C-10', 'C-100', 'Tiny-IN', 'Caltech',
                   'Avg'),
    rows=tuple(
        Row(f'r18_{m}', MODE_LABELS[m], f'configs/table4.py:mode={MODES[m]}', cells(PAPER[m]),
            baseline='r18_e2e',
            at_scale={'paper': f'configs/table4.py:mode={MODES[m]},stem=imagenet,scale=paper'})
        for m in ('e2e', 'lw', 'prog')),
    smoke_rows=('r18_e2e',),
    columns=(Column('memory', 'Mem (GB)', ratio=True), Column('gflops', 'GFLOPs', ratio=True),
             Column('comm', 'Comm (GB)', ratio=True)),
    notes=(
        'Communication: ours sends the temporary adapters (64/128/256 -> 512) with the heads '
        'and no BatchNorm statistics (GroupNorm); experiments/backbones/README.md accounts for '
        'both differences exactly (11.087 / 3.407 / 4.237 "GB" without them).',
        'cpu scale: the quickstart\'s quarter-width ResNet-18 (16-128 channels); full width '
        'trains ~19x slower than the ViT on this CPU.',
    ),
)
