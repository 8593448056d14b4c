"""Train the rows of one paper study.

    python -m experiments.run_study table2 --scale cpu --workdir runs/table2_cpu
    python -m experiments.run_study table3 --scale smoke --workdir runs/table3_smoke --rows lw_mocov3
    python -m experiments.run_study table9 --scale paper --data-dir data/medmnist \
        --workdir runs/table9 --set data.data_dir=~/tensorflow_datasets

Each row trains into `<workdir>/<row>/` with `lwfedssl_jax.train.run`; a row
whose summary.json exists is skipped and an interrupted one resumes from its
checkpoints, so rerunning the command continues the study. Then:
`python -m experiments.analyze_study <study> --workdir <workdir>`.
Studies: experiments/studylib/registry.py; scales: smoke | cpu | paper
(experiments/README.md, "Paper studies").
"""

import argparse

from experiments.studylib import run_command, registry, runner
from lwfedssl_jax import platform
from lwfedssl_jax.errors import UserError


def parse_args(argv):
    p = argparse.ArgumentParser(prog='python -m experiments.run_study',
                                description=__doc__.split('\n')[0])
    p.add_argument('study', help=f'one of: {", ".join(registry.STUDIES)}')
    p.add_argument('--scale', default='smoke', help='smoke | cpu | paper (default smoke)')
    p.add_argument('--workdir', required=True, help='one run directory per row under it')
    p.add_argument('--rows', default='', help='comma-separated rows (default: every row at '
                   'the scale; smoke: the study\'s smoke subset)')
    p.add_argument('--config-args', default='', help='key=value,... appended to every '
                   "row's config string (e.g. path=/data/c10cpu,seed=1)")
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                   help='config override for every row, e.g. fl.total_rounds=4 (repeatable)')
    p.add_argument('--data-dir', default=None, help='folder of the MedMNIST .npz files '
                   '(Tables 9-13 at cpu / paper scale; smoke writes fixtures)')
    return p.parse_args(argv)


def main(argv=None) -> dict:
    """Runs the command; returns `{row: 'trained' | 'skipped'}`."""
    args = parse_args(argv)
    study = registry.get(args.study)
    sets = []
    for item in args.set:
        key, sep, value = item.partition('=')
        if not sep:
            raise UserError(f'--set {item!r}: expected KEY=VALUE.')
        sets.append((key, value))
    platform.setup()
    done = runner.run(study, args.scale, args.workdir, args.rows or None, args.config_args,
                      sets, args.data_dir)
    print(f'[study {study.name}] {len(done)} rows ready; next: python -m '
          f'experiments.analyze_study {study.name} --workdir {args.workdir}', flush=True)
    return done


if __name__ == '__main__':
    run_command(main)
