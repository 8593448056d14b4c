"""Row builders shared by the studies, so that a row two studies declare is
one declaration (same name, same config: one run in a shared workdir).

* `table2_row`: a row of `configs/table2.py` (Tables 2, 3, 5, 6, Fig. 5).
  Its MoCo v3 e2e / layer-wise / progressive rows at cpu scale are the lead
  study's `configs/cifar10_cpu.py:mode=<mode>`.
* `tables6_8_row`: a row of `configs/tables6_8.py` (Tables 6-8, Fig. 6).
* `medmnist_row`: a MedMNIST run of `configs/medmnist.py` (Tables 9-13),
  named `<dataset>[_<variant>]_<mode>`, reading `{data_dir}/<dataset>_<size>.npz`.
"""

from experiments.studylib.spec import Row

# configs/table2.py rows that are configs/cifar10_cpu.py at cpu scale.
CPU_MAIN_STUDY = {'fedmocov3': 'e2e', 'lw_mocov3': 'layerwise', 'prog_mocov3': 'progressive'}

MODES = {'e2e': 'e2e', 'lw': 'layerwise', 'prog': 'progressive'}
# The fine-tuning metrics of the MedMNIST tables (paper notes §6: macro
# precision, recall, F1 and mean per-class accuracy), in the paper's order.
MEDMNIST_FINETUNE_METRICS = ('finetune_macro_precision', 'finetune_macro_recall',
                             'finetune_macro_f1', 'finetune_mean_per_class', 'finetune_top1')
MODE_LABELS = {'e2e': 'FedMoCoV3', 'lw': 'LW-FedSSL', 'prog': 'Prog-FedSSL'}


def table2_row(name: str, label: str, paper: tuple, *, row: str | None = None,
               blocks_per_stage: int = 1, **kwargs) -> Row:
    """A `configs/table2.py` row (`row` defaults to `name`)."""
    row = row or name
    config = f'configs/table2.py:row={row}'
    at_scale = {}
    if blocks_per_stage != 1:
        config += f',blocks_per_stage={blocks_per_stage}'
    elif row in CPU_MAIN_STUDY:
        at_scale['cpu'] = f'configs/cifar10_cpu.py:mode={CPU_MAIN_STUDY[row]}'
    return Row(name, label, config, paper, at_scale=at_scale, **kwargs)


def tables6_8_row(name: str, label: str, paper: tuple, *, row: str | None = None,
                  **kwargs) -> Row:
    """A `configs/tables6_8.py` row (`row` defaults to `name`)."""
    return Row(name, label, f'configs/tables6_8.py:row={row or name}', paper, **kwargs)


def medmnist_row(dataset: str, mode: str, paper: tuple, *, variant: str = '',
                 image_size: int = 64, patch_size: int = 4, batch_size: int = 128,
                 beta: float = 5.0, **kwargs) -> Row:
    """A MedMNIST row: `dataset` (e.g. 'bloodmnist'), `mode` in e2e | lw |
    prog, the paper's image / patch / batch / beta (configs/medmnist.py
    derives the cpu and smoke values), `variant` a name suffix (e.g. 'b256')
    for settings other than the paper's defaults."""
    short = dataset.removesuffix('mnist')
    name = '_'.join(filter(None, (short, variant, mode)))
    args = [f'path={{data_dir}}/{dataset}_{image_size}.npz', f'mode={MODES[mode]}']
    defaults = dict(image_size=64, patch_size=4, batch_size=128, beta=5.0)
    given = dict(image_size=image_size, patch_size=patch_size, batch_size=batch_size,
                 beta=beta)
    args += [f'{k}={v}' for k, v in given.items() if v != defaults[k]]
    return Row(name, MODE_LABELS[mode], 'configs/medmnist.py:' + ','.join(args), paper,
               **kwargs)
