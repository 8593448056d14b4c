"""Every row of the paper's Table 2 (plus L-DAWA), as config variants.

    python -m lwfedssl_jax.main --config configs/table2.py:row=fedema --workdir runs/t2_fedema
    python -m lwfedssl_jax.main --config configs/table2.py:row=lw_simclr,scale=paper \
        --config.data.data_dir=~/tensorflow_datasets --workdir runs/t2_lw_simclr
    python experiments/table2/run_quickstart.py      # every row at quickstart scale
    python experiments/table2/resources.py           # every row's resources (ViT-Tiny)

Rows (paper §2, §7.3; `ROWS` below): for each SSL method m in mocov3, byol,
simclr: `centralized_<m>` (all data pooled on one client, end-to-end),
`fed<m>` (end-to-end FedAvg), `lw_<m>` (LW-FedSSL), `prog_<m>`
(Prog-FedSSL); the baselines `fedu`, `fedema` (BYOL) and `fedca` (SimCLR);
and `ldawa` (end-to-end MoCo v3 with L-DAWA aggregation, Rehman et al.).

Args (`:key=value,...`): row; scale = quickstart (digits, 4 clients, CPU
minutes; configs/quickstart.py) | paper (ViT-Tiny, 10 clients, 180 rounds;
configs/cifar10_vit_tiny.py) | smoke (tiny, for tests) | cpu (the CPU-scale
main study of configs/cifar10_cpu.py: real CIFAR-10 images from the folder
`path`, a 4-block ViT at 16 px, 2 clients, that file's rounds; every method
keeps its temperature and head sizes); blocks_per_stage (Table 3: 1, 2,
3, 4, 6 at depth 12; 1, 2 at the cpu and smoke depths 4 and 2); path (cpu
scale: the image folder, default /tmp/c10cpu); seed.

At cpu scale the MoCo v3 rows equal `configs/cifar10_cpu.py:mode=<mode>`
(the MoCo v3 settings are taken from that file, not copied), so
`python -m experiments.run_study table2 --scale cpu` trains exactly the
lead study's config for them (experiments/table2/README.md).

Centralised rows: the paper does not give their epochs; here the pooled
client runs the federated rows' rounds x local epochs over all the data, so
it sees every image as often as the federated clients see theirs.
FedCA's public set: `data.public_size` images held out of the training
split (quickstart 64, paper 1,000), its base model trained on the server
for `data.public_base_epochs` epochs (federated/algorithms/fedca.py).
"""

from configs import cifar10_cpu, cifar10_vit_tiny, common, quickstart
from lwfedssl_jax.errors import ConfigError, did_you_mean

METHODS = ('mocov3', 'byol', 'simclr')


def _rows() -> dict:
    """row name -> (method, mode, fl.algorithm, server.aggregator, centralised)."""
    rows = {}
    for m in METHODS:
        rows[f'centralized_{m}'] = (m, 'e2e', 'fedavg', 'fedavg', True)
        rows[f'fed{m}'] = (m, 'e2e', 'fedavg', 'fedavg', False)
        rows[f'lw_{m}'] = (m, 'layerwise', 'fedavg', 'fedavg', False)
        rows[f'prog_{m}'] = (m, 'progressive', 'fedavg', 'fedavg', False)
    rows['fedu'] = ('byol', 'e2e', 'fedu', 'fedavg', False)
    rows['fedema'] = ('byol', 'e2e', 'fedema', 'fedavg', False)
    rows['fedca'] = ('simclr', 'e2e', 'fedca', 'fedavg', False)
    rows['ldawa'] = ('mocov3', 'e2e', 'fedavg', 'ldawa', False)
    return rows


ROWS = _rows()
# Scales whose configs build without files on disk (tests/test_validation.py
# checks every one of them); 'cpu' reads an image folder, see ALL_SCALES.
SCALES = ('quickstart', 'paper', 'smoke')
ALL_SCALES = SCALES + ('cpu',)
PUBLIC_SIZE = {'quickstart': 64, 'paper': 1000, 'smoke': 16, 'cpu': 100}
CPU_PATH = '/tmp/c10cpu'   # cifar10_cpu.py's default image folder


def cpu_config(method: str, mode: str, path: str = CPU_PATH, seed: int = 0):
    """`configs/cifar10_cpu.py` with SSL method `method` (unlocked).

    The method keeps that config's MoCo v3 settings wherever it has the same
    keyword (temperature, head sizes), so the cpu scale of every study is one
    recipe and MoCo v3 rows equal `cifar10_cpu.py:mode=<mode>` exactly.
    """
    c = cifar10_cpu.get_config(f'mode={mode},seed={seed},path={path}')
    c.unlock()
    common.set_method(c, method, **c.ssl.kwargs)
    return c


def get_config(arg=None):
    a = common.parse_arg(arg, row='lw_mocov3', scale='quickstart', blocks_per_stage=1,
                         path=CPU_PATH, seed=0)
    if a.row not in ROWS:
        raise ConfigError(':row', a.row, f'unknown; choices: {sorted(ROWS)}.'
                          + did_you_mean(a.row, ROWS))
    if a.scale not in ALL_SCALES:
        raise ConfigError(':scale', a.scale, f'unknown; choices: {ALL_SCALES}.')
    method, mode, algorithm, aggregator, centralized = ROWS[a.row]
    if a.scale == 'paper':
        c = cifar10_vit_tiny.get_config(f'method={method},mode={mode},'
                                        f'blocks_per_stage={a.blocks_per_stage}')
    elif a.scale == 'cpu':
        c = cpu_config(method, mode, a.path, a.seed)
    else:
        c = quickstart.get_config(f'method={method},mode={mode},'
                                  f'smoke={a.scale == "smoke"}')
    c.unlock()
    c.seed = a.seed
    c.blocks_per_stage = a.blocks_per_stage
    c.fl.algorithm = algorithm
    c.server.aggregator = aggregator
    if algorithm == 'fedca':
        c.data.public_size = PUBLIC_SIZE[a.scale]
        if a.scale == 'smoke':
            c.data.public_base_epochs = 1
    if centralized:
        c.fl.num_clients = 1
        c.fl.clients_per_round = 1
    c.lock()
    return c
