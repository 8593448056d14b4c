"""Trains a study's rows, one `train.run` each, resumably.

Each row trains into `<workdir>/<row>/`. A row whose `summary.json` exists
is skipped (after checking that its saved config is the one this study
would train), and an interrupted row resumes from its own checkpoints
(`train.run`), so rerunning the same command continues where it stopped.
Studies that declare the same row (same name, same config) can share one
workdir and train it once: e.g. Table 5 and Fig. 5 reuse Table 2's MoCo v3
rows. `<workdir>/<study>.manifest.json` records the scale and each row's
config string for the analysis.
"""

import importlib
import json
import os

import ml_collections

from experiments.studylib import medmnist_data
from experiments.studylib.spec import RUN_OVERRIDES, Row, Study, check_scale
from lwfedssl_jax import train, validation
from lwfedssl_jax.checkpoints import check_resume_config
from lwfedssl_jax.errors import UserError
from lwfedssl_jax.utils.overrides import set_override

DATA_DIR = '{data_dir}'   # placeholder in row configs: the --data-dir


def manifest_path(workdir: str, study: Study) -> str:
    return os.path.join(workdir, f'{study.name}.manifest.json')


def load_config(spec: str) -> ml_collections.ConfigDict:
    """The config of `configs/<name>.py:args` (as `main --config` reads it)."""
    path, _, arg = spec.partition(':')
    folder, name = os.path.split(os.path.normpath(path))
    if folder != 'configs' or not name.endswith('.py'):
        raise UserError(f'config {spec!r}: expected configs/<name>.py[:args].')
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not os.path.isfile(os.path.join(root, path)):
        raise UserError(f'config {spec!r}: {path} does not exist.')
    return importlib.import_module(f'configs.{name[:-3]}').get_config(arg or None)


def apply_sets(config: ml_collections.ConfigDict, sets) -> None:
    """Applies `('a.b', value)` pairs; a string value is typed like the key's
    current value (`lwfedssl_jax.utils.overrides`)."""
    for key, value in sets:
        try:
            set_override(config, key, value)
        except (KeyError, ValueError) as e:
            raise UserError(f'--set {key}={value}: {str(e).strip(chr(39))}.') from None


def row_spec(row: Row, scale: str, config_args: str = '', data_dir: str | None = None) -> str:
    """The full config string of `row` at `scale`."""
    spec = row.config_string(scale)
    if config_args:
        spec += (',' if ':' in spec else ':') + config_args
    if DATA_DIR in spec:
        if data_dir is None:
            raise UserError(f'row {row.name!r} reads MedMNIST files at {scale} scale: give '
                            '--data-dir DIR holding e.g. bloodmnist_64.npz (MedMNIST+).')
        spec = spec.replace(DATA_DIR, data_dir)
    return spec


def row_config(row: Row, scale: str, config_args: str = '', sets=(),
               data_dir: str | None = None) -> tuple[str, ml_collections.ConfigDict]:
    """`(config string, locked config)` of `row` at `scale`, with the run
    overrides every study applies at that scale (`spec.RUN_OVERRIDES`) and
    `sets`."""
    spec = row_spec(row, scale, config_args, data_dir)
    config = load_config(spec)
    config.unlock()
    apply_sets(config, RUN_OVERRIDES[scale])
    apply_sets(config, sets)
    config.lock()
    return spec, config


def _check_finished_row(rowdir: str, config) -> None:
    """A finished row is reused only if it trained this config (differences
    in log.* / checkpoint.* keys, which change no result, are accepted)."""
    with open(os.path.join(rowdir, 'config.json')) as f:
        saved = json.load(f)
    check_resume_config(saved, json.loads(config.to_json()), allow_safe_changes=True)


def _write_manifest(workdir: str, study: Study, scale: str, specs: dict) -> None:
    path = manifest_path(workdir, study)
    rows = {}
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        if old['scale'] != scale:
            raise UserError(f'{workdir} holds study {study.name} at scale {old["scale"]}, '
                            f'not {scale}: use another --workdir.')
        rows = old['rows']
    rows.update(specs)
    with open(path, 'w') as f:
        json.dump({'study': study.name, 'scale': scale, 'rows': rows}, f, indent=1)


def run(study: Study, scale: str, workdir: str, rows: str | None = None,
        config_args: str = '', sets=(), data_dir: str | None = None) -> dict:
    """Trains the rows of `study` at `scale` that have no summary yet.

    Args:
      study: the study.
      scale: smoke | cpu | paper.
      workdir: one run directory per row is made under it.
      rows: comma-separated row names (default: `Study.select`'s).
      config_args: `key=value,...` appended to every row's config string
        (e.g. `path=/data/c10cpu,seed=1`).
      sets: `(key, value)` config overrides applied to every row.
      data_dir: the folder holding the MedMNIST files (`{data_dir}` in row
        configs); at smoke scale, fixture files are written under the
        workdir when it is not given.

    Returns:
      `{row name: 'trained' | 'skipped'}`.

    Raises:
      UserError: an unknown scale or row, a config that cannot build or
        validate, or a finished row trained with another config.
    """
    check_scale(scale)
    chosen = study.select(scale, rows)
    if (scale == 'smoke' and data_dir is None
            and any(DATA_DIR in r.config_string(scale) for r in chosen)):
        data_dir = os.path.join(workdir, 'smoke_data')
        medmnist_data.write_fixtures([row_spec(r, scale, '', data_dir) for r in chosen])
    built = {r.name: row_config(r, scale, config_args, sets, data_dir) for r in chosen}
    for name, (_, config) in built.items():   # every row checked before the first trains
        validation.check_config(config)
    os.makedirs(workdir, exist_ok=True)
    _write_manifest(workdir, study, scale, {n: spec for n, (spec, _) in built.items()})
    done = {}
    for name, (spec, config) in built.items():
        rowdir = os.path.join(workdir, name)
        if os.path.exists(os.path.join(rowdir, 'summary.json')):
            _check_finished_row(rowdir, config)
            print(f'[study {study.name}] {name}: finished before, skipped', flush=True)
            done[name] = 'skipped'
            continue
        print(f'\n[study {study.name}] {name}: {spec}', flush=True)
        train.run(config, rowdir)
        done[name] = 'trained'
    return done
