"""The paper studies' shared library: declarations, runner, analysis, figures.

A study (`spec.Study`) is the paper's table or figure as rows of configs
and the paper's numbers; `runner.run` trains its rows at a scale (smoke |
cpu | paper), `analysis.analyze` writes the table with the paper's numbers
beside ours. The commands are `python -m experiments.run_study` and
`python -m experiments.analyze_study` (experiments/README.md, "Paper
studies").
"""

import sys

from lwfedssl_jax.errors import UserError


def run_command(main) -> None:
    """Runs a study command's `main()`; a user's mistake (`UserError`) is one
    line on stderr and exit status 2, not a traceback."""
    try:
        main()
    except UserError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
