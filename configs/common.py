"""Base config: every key's default lives here (paper defaults, §5).

Configs are built by `base()` and adjusted by each experiment file's
`get_config(arg)`. Variants are chosen with `:key=value,...` strings parsed by
`parse_arg` (big_vision style); single keys are overridden on the command
line with `--config.a.b=value`. The returned ConfigDict is locked: unknown
keys raise.
"""

import ml_collections
from ml_collections import config_dict

from lwfedssl_jax.data import augment


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """Parses 'a=1,b=x' into a ConfigDict typed like `defaults`.

    Raises ValueError for keys not in `defaults` (listing the valid ones).
    """
    out = ml_collections.ConfigDict(defaults)
    for item in filter(None, (arg or '').split(',')):
        key, sep, value = item.partition('=')
        if key not in defaults:
            raise ValueError(f'Unknown config argument {key!r} in {arg!r}; '
                             f'valid: {sorted(defaults)}.')
        default = defaults[key]
        if isinstance(default, bool):
            if value.lower() not in ('true', 'false', '1', '0', ''):
                raise ValueError(f'Config argument {key} expects a bool, got {value!r}.')
            out[key] = value.lower() in ('true', '1', '') if sep else True
        else:
            out[key] = type(default)(value)
    return out


def base() -> ml_collections.ConfigDict:
    """The paper's CIFAR/COCO ViT-Tiny MoCo v3 defaults (unlocked)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.mode = 'layerwise'            # e2e | layerwise | progressive (stages.py)
    c.blocks_per_stage = 1          # 1, 2, 3, 4, 6 for depth 12 (Table 3)

    c.model = dict(image_size=32, patch_size=4, width=192, depth=12,
                   num_heads=3, mlp_dim=768)

    c.ssl = ml_collections.ConfigDict()
    c.ssl.name = 'mocov3'
    c.ssl.kwargs = dict(temperature=0.05, momentum=0.99, proj_hidden=512,
                        proj_dim=256, proj_layers=3, pred_hidden=512,
                        pred_layers=2, loss_scale_2tau=False)

    c.data = ml_collections.ConfigDict()
    c.data.source = 'digits'        # digits | tfds:<name> | folder:<path> | synthetic
    c.data.data_dir = config_dict.placeholder(str)   # tfds data_dir
    c.data.download = False         # tfds downloads only when asked
    c.data.cache_dir = config_dict.placeholder(str)  # folder: decoded-array cache
    c.data.partition = 'uniform'    # uniform | dirichlet (paper default: uniform)
    c.data.dirichlet_alpha = 0.5
    c.data.partition_seed = 0       # separate from the model seed on purpose
    c.data.synthetic_train = 512
    c.data.synthetic_test = 128

    # Two-view augmentation: the fields and MoCo v3 defaults of
    # data/augment.py AugmentConfig (one source of truth, no drift).
    c.augment = augment.AugmentConfig()._asdict()

    c.fl = ml_collections.ConfigDict()
    c.fl.num_clients = 10
    c.fl.clients_per_round = 10     # K <= num_clients; sampled without replacement
    c.fl.local_epochs = 3           # E
    c.fl.batch_size = 512           # B per client step
    c.fl.total_rounds = 180         # R, split equally over the stages
    c.fl.client_execution = 'vmap'  # vmap | map | chunked (federated/client.py)
    c.fl.client_chunk = 0           # clients per vmapped chunk for 'chunked'
    c.fl.mesh_devices = 1           # split clients over devices: 1 none, -1 all

    c.optim = ml_collections.ConfigDict()
    c.optim.base_lr = 1.5e-4        # lr = base_lr * batch_size / 256
    c.optim.weight_decay = 1e-5
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999

    c.eval = ml_collections.ConfigDict()
    c.eval.at_stage_end = True
    c.eval.random_baseline = True   # also evaluate a random-init encoder
    c.eval.batch_size = 256
    c.eval.knn_k = 20
    c.eval.knn_temperature = 0.07
    c.eval.probe_epochs = 100
    c.eval.probe_lr = 1e-2
    c.eval.probe_batch_size = 256
    c.eval.probe_weight_decay = 1e-4

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.enabled = True
    c.checkpoint.every_rounds = 1     # plus always at every stage end
    c.checkpoint.keep = 2             # latest N kept, plus every stage end
    c.checkpoint.allow_safe_changes = False   # resume despite log.* etc. changes

    c.accounting = ml_collections.ConfigDict()
    # Examples per client assumed by the compile-only `resources` report;
    # 0 = load the data and use the real partition (as training does).
    c.accounting.examples_per_client = 0
    c.accounting.outdir = 'runs/resources'   # where `resources` writes

    c.log = ml_collections.ConfigDict()
    c.log.progress = True           # tqdm bar per stage, loss per round
    c.log.step_flops = 'every_stage'  # every_stage | last_stage | none: XLA
                                      # cost_analysis of one client step
    return c
