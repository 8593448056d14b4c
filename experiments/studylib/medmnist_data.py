"""MedMNIST files for smoke runs: tiny fixtures in MedMNIST's `.npz` format.

At smoke scale the MedMNIST studies (Tables 9-13) train on files written by
`tests/data/medmnist_fixture.py` (class-dependent gratings, see there) with
each dataset's class count and colour, named like the MedMNIST+ files the
cpu and paper scales read (`bloodmnist_64.npz`, ...).
"""

import importlib.util
import os
import re

# MedMNIST datasets of the paper (notes §4.5): classes, RGB (else grayscale).
DATASETS = {
    'pathmnist': (9, True),
    'bloodmnist': (8, True),
    'dermamnist': (7, True),
    'organamnist': (11, False),
}
SMOKE_SPLITS = (200, 40, 80)   # train, val, test: every smoke client holds > 16

_FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'tests', 'data', 'medmnist_fixture.py')


def _fixture_module():
    spec = importlib.util.spec_from_file_location('medmnist_fixture', _FIXTURE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_fixtures(config_specs) -> list[str]:
    """Writes the `path=<dir>/<dataset>_<size>.npz` files the config strings
    name (those already there are kept).

    Returns:
      The paths written.
    """
    fixture, written = None, []
    for spec in config_specs:
        for path in re.findall(r'path=([^,]+\.npz)', spec):
            if os.path.exists(path):
                continue
            dataset = os.path.basename(path).split('_')[0]
            if dataset not in DATASETS:
                raise ValueError(f'{path}: not one of the MedMNIST datasets {sorted(DATASETS)}')
            classes, rgb = DATASETS[dataset]
            fixture = fixture or _fixture_module()
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fixture.write_medmnist(path, rgb=rgb, n=SMOKE_SPLITS, num_classes=classes)
            written.append(path)
    return written
