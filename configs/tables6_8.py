"""Every row of the paper's Tables 6, 7, 8 and 13, as config variants.

    python -m lwfedssl_jax.main --config configs/tables6_8.py:row=lw_ra --workdir runs/t6_lw_ra
    python -m lwfedssl_jax.main --config configs/tables6_8.py:row=drop50_lw,scale=paper \
        --config.data.data_dir=~/tensorflow_datasets --workdir runs/t8_drop50_lw
    python experiments/addons/run_quickstart.py    # Tables 6 and 7 at quickstart scale
    python experiments/addons/table6_resources.py  # Table 6's resource rows (ViT-Tiny)

Rows (`ROWS`; paper §1.10, §4.2, §4.5, §7.7-7.9, §7.14):
* Table 6, add-ons on the staged methods: `lw`, `lw_dd` (depth dropout),
  `lw_pa` (FedProx), `lw_ra` (MOON), `prog`, `prog_dd`, `prog_pa`,
  `prog_ra`. Depth dropout skips blocks of earlier stages: frozen ones in
  layer-wise mode, earlier trained ones in progressive mode, where a
  skipped block is neither trained, downloaded nor uploaded and each block
  is averaged over the clients that kept it.
* Table 7, partial participation: 100 clients, `part25_<m>` / `part50_<m>`
  sample 25 / 50 per round.
* Table 8, client dropout: 100 clients all sampled, each fails to report
  with probability 0.25 / 0.5: `drop25_<m>`, `drop50_<m>`.
* Table 13, label skew: Dirichlet beta 50 / 5 / 0.5 over 10 clients:
  `beta50_<m>`, `beta5_<m>`, `beta0.5_<m>` (MedMNIST at paper scale, digits
  at quickstart scale).
where <m> is `fedmocov3` (end-to-end), `lw` or `prog`.

Args (`:key=value,...`): row; scale = quickstart (digits, CPU minutes) |
paper (ViT-Tiny 32 px CIFAR/COCO settings; Table 13: configs/medmnist.py) |
smoke (tiny, for tests) | cpu (`configs/table2.py`'s cpu scale, i.e.
configs/cifar10_cpu.py; its 100-client rows use batch 32, the ~100 images
of a client holding 3 batches; Table 13: configs/medmnist.py at cpu scale);
path: the MedMNIST .npz of Table 13 at paper or cpu scale, or the image
folder of the other rows at cpu scale (default configs/table2.py CPU_PATH);
seed.

Values the paper does not give (ours, documented): depth dropout rate 0.3
(inferred from Table 6's FLOPs, spec §6), PA mu 0.01, RA mu 1 and tau 0.5
(MOON's), `configs/common.py` ADDON_DEFAULTS. At quickstart scale the 100
digits clients hold about 13 images each, so their batch is 8 and they run 8
local epochs over 64 rounds (16 per stage): with 2 epochs over 32 rounds the
layer-wise kNN stayed below the random encoder's (56.9 vs 64.7).
"""

from configs import cifar10_vit_tiny, common, medmnist, quickstart, table2
from lwfedssl_jax.errors import ConfigError, did_you_mean

MODES = {'fedmocov3': 'e2e', 'lw': 'layerwise', 'prog': 'progressive'}
DEPTH_DROPOUT = 0.3
SCALES = ('quickstart', 'paper', 'smoke')


def _rows() -> dict:
    """row name -> (mode, overrides of `fl`, extra settings)."""
    rows = {
        'lw': ('layerwise', {}, {}),
        'lw_dd': ('layerwise', {'depth_dropout': DEPTH_DROPOUT}, {}),
        'lw_pa': ('layerwise', {'addons': ('pa',)}, {}),
        'lw_ra': ('layerwise', {'addons': ('ra',)}, {}),
        'prog': ('progressive', {}, {}),
        'prog_dd': ('progressive', {'depth_dropout': DEPTH_DROPOUT}, {}),
        'prog_pa': ('progressive', {'addons': ('pa',)}, {}),
        'prog_ra': ('progressive', {'addons': ('ra',)}, {}),
    }
    for m, mode in MODES.items():
        for k in (25, 50):
            rows[f'part{k}_{m}'] = (mode, {'clients_per_round': k}, {'clients': 100})
        for p in (25, 50):
            rows[f'drop{p}_{m}'] = (mode, {'dropout': p / 100}, {'clients': 100})
        for beta in ('50', '5', '0.5'):
            rows[f'beta{beta}_{m}'] = (mode, {}, {'beta': float(beta)})
    return rows


ROWS = _rows()
# As in configs/table2.py: 'cpu' reads files, so it stays out of SCALES.
ALL_SCALES = SCALES + ('cpu',)
CPU_CLIENT_BATCH = 32   # cpu scale, 100 clients of ~100 images each


def get_config(arg=None):
    a = common.parse_arg(arg, row='lw', scale='quickstart', path='', seed=0)
    if a.row not in ROWS:
        raise ConfigError(':row', a.row, f'unknown; choices: {sorted(ROWS)}.'
                          + did_you_mean(a.row, ROWS))
    if a.scale not in ALL_SCALES:
        raise ConfigError(':scale', a.scale, f'unknown; choices: {ALL_SCALES}.')
    mode, fl, extra = ROWS[a.row]
    smoke = a.scale == 'smoke'
    if 'beta' in extra and a.scale in ('paper', 'cpu'):
        if not a.path:
            raise ConfigError(':path', a.path, f'Table 13 at {a.scale} scale reads '
                              'MedMNIST: give the .npz, e.g. :path=data/bloodmnist_64.npz.')
        c = medmnist.get_config(f'path={a.path},mode={mode},beta={extra["beta"]},'
                                f'scale={a.scale},seed={a.seed}')
    elif a.scale == 'paper':
        c = cifar10_vit_tiny.get_config(f'mode={mode}')
    elif a.scale == 'cpu':
        c = table2.cpu_config('mocov3', mode, a.path or table2.CPU_PATH, a.seed)
    else:
        c = quickstart.get_config(f'mode={mode},smoke={smoke}')
    c.unlock()
    c.seed = a.seed
    if 'beta' in extra and a.scale not in ('paper', 'cpu'):
        c.data.partition, c.data.dirichlet_alpha = 'dirichlet', extra['beta']
        if not smoke:
            c.fl.batch_size = 32   # beta 0.5 leaves some digits clients small
    if 'clients' in extra:
        c.fl.num_clients = c.fl.clients_per_round = extra['clients']
        if a.scale == 'quickstart':
            c.fl.batch_size, c.fl.local_epochs, c.fl.total_rounds = 8, 8, 64
        elif a.scale == 'cpu':
            c.fl.batch_size = CPU_CLIENT_BATCH
        elif smoke:   # 100 clients of 8 synthetic images
            c.data.synthetic_train, c.fl.batch_size = 800, 4
    for key, value in fl.items():
        c.fl[key] = value
    c.lock()
    return c
