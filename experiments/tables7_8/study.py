"""Paper Tables 7 and 8: 100 clients, partial participation (25 or 50 sampled
per round) and client dropout (each sampled client fails to report with
probability 25% or 50%).

Paper numbers: paper notes §7.8 and §7.9 (arXiv v4 Tables 7, 8), cells
copied verbatim. Rows are `configs/tables6_8.py` rows (`part<k>_<m>`,
`drop<p>_<m>`). The paper reports accuracy only.
"""

from experiments.studylib.rows import MODE_LABELS, tables6_8_row
from experiments.studylib.spec import Study, cells

PAPER = {
    'part25': ('25/100', {'fedmocov3': '71.85 | 49.19 | 32.98 | 33.95 | 46.99',
                          'lw': '84.33 | 61.96 | 39.46 | 43.80 | 57.39',
                          'prog': '85.18 | 62.80 | 40.05 | 55.88 | 60.98'}),
    'part50': ('50/100', {'fedmocov3': '72.73 | 49.62 | 33.58 | 34.67 | 47.65',
                          'lw': '84.23 | 62.17 | 41.17 | 44.28 | 57.96',
                          'prog': '84.46 | 62.87 | 40.19 | 56.96 | 61.12'}),
    'drop25': ('25% dropout', {'fedmocov3': '72.38 | 49.49 | 33.48 | 34.38 | 47.43',
                               'lw': '84.33 | 62.12 | 40.32 | 43.19 | 57.49',
                               'prog': '85.11 | 62.73 | 40.34 | 54.69 | 60.72'}),
    'drop50': ('50% dropout', {'fedmocov3': '73.08 | 49.67 | 33.19 | 35.14 | 47.77',
                               'lw': '83.93 | 61.66 | 40.06 | 44.77 | 57.61',
                               'prog': '84.78 | 63.08 | 40.67 | 54.02 | 60.64'}),
}
LABELS = {'fedmocov3': MODE_LABELS['e2e'], 'lw': MODE_LABELS['lw'],
          'prog': MODE_LABELS['prog']}

STUDY = Study(
    name='tables7_8',
    title='Tables 7 and 8: 100 clients, partial participation and client dropout',
    source='paper notes §7.8, §7.9 (arXiv v4 Tables 7, 8)',
    paper_columns=('C-10', 'C-100', 'Tiny-IN', 'Caltech', 'Avg'),
    rows=tuple(
        tables6_8_row(f'{setting}_{m}', LABELS[m], cells(paper), group=group,
                      baseline=f'{setting}_fedmocov3')
        for setting, (group, by_mode) in PAPER.items() for m, paper in by_mode.items()),
    smoke_rows=('part25_lw',),
    notes=('Partial participation: the server averages over the clients that took part '
           '(weights renormalised); a newly sampled layer-wise client catches up on the '
           'frozen blocks it lacks (counted as catch-up bytes).',),
)
