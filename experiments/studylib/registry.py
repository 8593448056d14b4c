"""Every paper study, by name (one folder `experiments/<name>/` each)."""

from experiments.fig5 import study as fig5
from experiments.fig6 import study as fig6
from experiments.studylib.spec import Study
from experiments.table2 import study as table2
from experiments.table3 import study as table3
from experiments.table4 import study as table4
from experiments.table5 import study as table5
from experiments.table6 import study as table6
from experiments.table9 import study as table9
from experiments.table10 import study as table10
from experiments.table11 import study as table11
from experiments.table12 import study as table12
from experiments.table13 import study as table13
from experiments.tables7_8 import study as tables7_8
from lwfedssl_jax.errors import UserError

STUDIES = {m.STUDY.name: m.STUDY for m in (
    table2, table3, table4, table5, table6, tables7_8, table9, table10, table11, table12,
    table13, fig5, fig6)}


def get(name: str) -> Study:
    """The study called `name`.

    Raises:
      UserError: no such study (the message lists the choices).
    """
    if name not in STUDIES:
        raise UserError(f'unknown study {name!r}; choices: {", ".join(STUDIES)}')
    return STUDIES[name]
