"""Paper Table 12 and Fig. 8: client batch size (BloodMNIST).

Paper numbers: paper notes §7.13 (arXiv v4 Table 12) and, for peak memory,
Fig. 8's curves as the notes read them off (§7.11, approximate; Prog-FedSSL's
peak equals end-to-end's there), cells copied verbatim. The batch-128 rows
are Table 9's BloodMNIST rows. At cpu scale each batch is halved, at smoke
scale divided by 8 (configs/medmnist.py); the learning rate follows
base_lr x batch / 256 as in the paper.
"""

from experiments.studylib.rows import MEDMNIST_FINETUNE_METRICS, medmnist_row
from experiments.studylib.spec import Column, Study, cells

SETTINGS = {
    64: {'e2e': '92.28 | 91.56 | 91.71 | 91.29 | ≈ 6.5', 'lw': '92.66 | 92.85 | 92.61 | 92.61 | ≈ 2.6',
         'prog': '93.80 | 94.25 | 93.87 | 94.23 | = FedMoCoV3'},
    128: {'e2e': '91.18 | 90.84 | 90.68 | 90.82 | ≈ 11.5', 'lw': '92.90 | 93.15 | 92.76 | 93.20 | ≈ 3.1',
          'prog': '94.12 | 93.73 | 93.77 | 93.62 | = FedMoCoV3'},
    256: {'e2e': '91.48 | 91.78 | 91.35 | 91.65 | ≈ 21', 'lw': '92.33 | 92.74 | 92.31 | 92.58 | ≈ 4.3',
          'prog': '94.67 | 94.72 | 94.54 | 94.68 | = FedMoCoV3'},
    512: {'e2e': '90.10 | 90.48 | 90.02 | 90.13 | ≈ 39', 'lw': '91.95 | 92.25 | 91.86 | 92.01 | ≈ 6.8',
          'prog': '93.80 | 93.91 | 93.65 | 93.89 | = FedMoCoV3'},
}


def _variant(batch: int) -> str:
    return '' if batch == 128 else f'b{batch}'


STUDY = Study(
    name='table12',
    title='Table 12 and Fig. 8: client batch size (BloodMNIST)',
    source='paper notes §7.13 (arXiv v4 Table 12) and §7.11 (Fig. 8, read off the plot)',
    paper_columns=('Prec', 'Rec', 'F1', 'Acc', 'Peak mem (GB, Fig. 8)'),
    rows=tuple(
        medmnist_row('bloodmnist', m, cells(p), variant=_variant(batch), batch_size=batch,
                     group=f'batch {batch}',
                     baseline='_'.join(filter(None, ('blood', _variant(batch), 'e2e'))))
        for batch, by_mode in SETTINGS.items() for m, p in by_mode.items()),
    smoke_rows=('blood_e2e', 'blood_lw'),
    columns=(Column('memory', 'Peak mem (GB, Fig. 8)', ratio=True),),
    finetune_metrics=MEDMNIST_FINETUNE_METRICS,
    figures=('fig8_memory_vs_batch',),
    notes=('Batch sizes are the paper\'s; the runs use half of them at cpu scale and an '
           'eighth at smoke scale (the row\'s config says which).',),
)
