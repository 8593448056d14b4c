"""Paper Table 5: LW-FedSSL's worst-case communication.

Paper notes §7.6: a client that (re)joins downloads the whole present
encoder F_s every round and uploads L_s. The runs are Table 2's MoCo v3 rows
(same names and configs: share Table 2's workdir to reuse them); the
worst-case figure is the engine's `comm_worst_case_paper_gb`, counted beside
the default accounting in every run.
"""

from experiments.studylib.rows import table2_row
from experiments.studylib.spec import Column, Study, cells

STUDY = Study(
    name='table5',
    title='Table 5: LW-FedSSL worst-case communication (download all of F_s, upload L_s)',
    source='paper notes §7.6 (arXiv v4 Table 5)',
    paper_columns=('Comm (GB)',),
    rows=(
        table2_row('fedmocov3', 'FedMoCoV3', cells('8.40 (1.00×)'), baseline='fedmocov3'),
        table2_row('lw_mocov3', 'LW-FedSSL', cells('3.35 (0.40×)'), baseline='fedmocov3'),
        table2_row('prog_mocov3', 'Prog-FedSSL', cells('5.04 (0.60×)'), baseline='fedmocov3'),
    ),
    smoke_rows=('fedmocov3', 'lw_mocov3', 'prog_mocov3'),
    columns=(Column('comm', ratio=True), Column('comm_worst', 'Comm (GB)', ratio=True)),
    accuracy=False,
    notes=('e2e and progressive clients exchange every present block each round, so their '
           'worst case equals their default communication.',),
)
