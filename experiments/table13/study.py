"""Paper Table 13: data heterogeneity, Dirichlet beta over 10 clients (BloodMNIST).

Paper numbers: paper notes §7.14 (arXiv v4 Table 13), cells copied verbatim.
The beta = 5 rows are Table 9's BloodMNIST rows. (`configs/tables6_8.py`'s
`beta*` rows are the same study on the quickstart's digits.)
"""

from experiments.studylib.rows import MEDMNIST_FINETUNE_METRICS, medmnist_row
from experiments.studylib.spec import Study, cells

SETTINGS = {
    50.0: {'e2e': '91.05 | 91.09 | 90.85 | 91.09', 'lw': '92.60 | 92.92 | 92.56 | 92.77',
           'prog': '94.33 | 94.46 | 94.27 | 94.49'},
    5.0: {'e2e': '91.18 | 90.84 | 90.68 | 90.82', 'lw': '92.90 | 93.15 | 92.76 | 93.20',
          'prog': '94.12 | 93.73 | 93.77 | 93.62'},
    0.5: {'e2e': '92.43 | 92.26 | 92.10 | 92.14', 'lw': '92.55 | 93.15 | 92.68 | 92.93',
          'prog': '93.34 | 93.49 | 93.24 | 93.59'},
}


def _variant(beta: float) -> str:
    return '' if beta == 5.0 else f'beta{beta:g}'


STUDY = Study(
    name='table13',
    title='Table 13: data heterogeneity, Dirichlet beta (BloodMNIST)',
    source='paper notes §7.14 (arXiv v4 Table 13)',
    paper_columns=('Prec', 'Rec', 'F1', 'Acc'),
    rows=tuple(
        medmnist_row('bloodmnist', m, cells(p), variant=_variant(beta), beta=beta,
                     group=f'beta = {beta:g}',
                     baseline='_'.join(filter(None, ('blood', _variant(beta), 'e2e'))))
        for beta, by_mode in SETTINGS.items() for m, p in by_mode.items()),
    smoke_rows=('blood_e2e', 'blood_lw'),
    finetune_metrics=MEDMNIST_FINETUNE_METRICS,
    notes=('Clients: 10 at paper scale, 4 at cpu scale, 3 at smoke scale; beta is the '
           'paper\'s at every scale.',),
)
