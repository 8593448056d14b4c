"""Write one paper study's table (the paper's numbers beside ours) and figures.

    python -m experiments.analyze_study table2 --workdir runs/table2_cpu

Reads the rows `python -m experiments.run_study` trained under the workdir
(unfinished rows are marked) and writes `<workdir>/<study>.md`,
`<workdir>/<study>.json` and `<workdir>/<study>_<figure>.png`.
"""

import argparse

from experiments.studylib import run_command, analysis, registry


def main(argv=None) -> dict:
    """Runs the command; returns `analysis.analyze`'s result."""
    p = argparse.ArgumentParser(prog='python -m experiments.analyze_study',
                                description=__doc__.split('\n')[0])
    p.add_argument('study', help=f'one of: {", ".join(registry.STUDIES)}')
    p.add_argument('--workdir', required=True)
    args = p.parse_args(argv)
    result = analysis.analyze(registry.get(args.study), args.workdir)
    print(result['markdown'])
    print('Written:', ', '.join(result['paths']))
    return result


if __name__ == '__main__':
    run_command(main)
