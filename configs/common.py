"""Base config: every key's default lives here (paper defaults, §5).

Configs are built by `base()` and adjusted by each experiment file's
`get_config(arg)`. Variants are chosen with `:key=value,...` strings parsed by
`parse_arg` (big_vision style); single keys are overridden on the command
line with `--config.a.b=value`. The returned ConfigDict is locked: unknown
keys raise.
"""

import ml_collections
from ml_collections import config_dict

from lwfedssl_jax import models
from lwfedssl_jax.data import augment
from lwfedssl_jax.errors import ConfigError, did_you_mean


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """Parses 'a=1,b=x' into a ConfigDict typed like `defaults`.

    Raises ConfigError for keys not in `defaults` (listing the valid ones)
    and for values of the wrong type.
    """
    out = ml_collections.ConfigDict(defaults)
    for item in filter(None, (arg or '').split(',')):
        key, sep, value = item.partition('=')
        if key not in defaults:
            raise ConfigError(f':{key}', value, f'Unknown config argument in {arg!r}; '
                              f'valid: {sorted(defaults)}.' + did_you_mean(key, defaults))
        default = defaults[key]
        if isinstance(default, bool):
            if value.lower() not in ('true', 'false', '1', '0', ''):
                raise ConfigError(f':{key}', value, 'expects a bool (true/false/1/0).')
            out[key] = value.lower() in ('true', '1', '') if sep else True
        else:
            try:
                out[key] = type(default)(value)
            except ValueError:
                raise ConfigError(f':{key}', value,
                                  f'expects {type(default).__name__}.') from None
    return out


# Each SSL method's keyword arguments and their defaults (paper §2). A config
# holds only its method's: `set_method` picks them, so a BYOL run never
# receives MoCo's temperature.
SSL_DEFAULTS = {
    # Paper §2.1: τ 0.05, µ 0.99 constant, H 3 layers 512/256, P 2 layers 512;
    # P ends in BN without affine like MoCo v3's ViT model (ResNet configs
    # turn it off, like MoCo v3's ResNet model).
    'mocov3': dict(temperature=0.05, momentum=0.99, momentum_schedule='constant',
                   proj_hidden=512, proj_dim=256, proj_layers=3, pred_hidden=512,
                   pred_layers=2, pred_last_bn=True, loss_scale_2tau=False),
    # Paper §2.2: no BYOL hyperparameters; its resource figures equal MoCo
    # v3's, so the same heads and µ (BYOL's own cosine ramp: an option).
    'byol': dict(momentum=0.99, momentum_schedule='constant', proj_hidden=512,
                 proj_dim=256, proj_layers=3, pred_hidden=512, pred_layers=2),
    # Paper §2.3: projector only; temperature not stated: SimCLR's 0.5.
    'simclr': dict(temperature=0.5, proj_hidden=512, proj_dim=256, proj_layers=3),
}

# Every federated algorithm's own keyword arguments (fl.algorithm picks one;
# the others are ignored), so `--config.fl.algorithm=fedema` works on any
# config. Documented in federated/algorithms/<name>.py.
ALGORITHM_DEFAULTS = {
    'fedavg': dict(),
    'fedu': dict(threshold=1.0, relative=True),
    'fedema': dict(tau=0.7, divergence='drift'),
    'fedca': dict(dictionary=True, align_weight=1.0, align_batch=32),
}

# Loss add-ons of Table 6 (fl.addons picks any; federated/addons.py). The
# paper gives no values: PA's mu is ours, RA's mu and tau are MOON's.
ADDON_DEFAULTS = {
    'pa': dict(mu=0.01),
    'ra': dict(mu=1.0, temperature=0.5),
}

# Aggregators' own keyword arguments (server.aggregator picks one).
AGGREGATOR_DEFAULTS = {
    'fedavg': dict(),
    'ldawa': dict(warmup_rounds=1),
}


def set_method(c: ml_collections.ConfigDict, name: str, **overrides) -> None:
    """Sets `c.ssl` to method `name` with its defaults, then `overrides` for
    the keys that method has (others are skipped: e.g. a temperature
    override does not reach BYOL)."""
    if name not in SSL_DEFAULTS:
        raise ConfigError(':method', name, f'unknown; choices: {sorted(SSL_DEFAULTS)}.'
                          + did_you_mean(name, SSL_DEFAULTS))
    kwargs = dict(SSL_DEFAULTS[name])
    kwargs.update({k: v for k, v in overrides.items() if k in kwargs})
    c.ssl = ml_collections.ConfigDict({'name': name, 'kwargs': kwargs})


def set_model(c: ml_collections.ConfigDict, name: str, **fields) -> None:
    """Sets `c.model` to backbone `name` (models.MODELS) with its defaults,
    then `fields` (each must be one of its fields)."""
    model = models.model_fields(name)
    for key in fields:
        if key not in model:
            raise ConfigError(f'model.{key}', fields[key], f'is not a field of '
                              f'{name!r}; its fields: {sorted(model)}.'
                              + did_you_mean(key, model))
    c.model = ml_collections.ConfigDict({'name': name, **model, **fields})


# MoCo v3's reference predictor per backbone: its ViT model ends the
# predictor in BatchNorm without affine, its ResNet model does not
# (`ssl.kwargs.pred_last_bn`).
PRED_LAST_BN = {'vit': True, 'resnet18': False}


def set_smoke_run(c: ml_collections.ConfigDict) -> None:
    """The federated, evaluation and logging settings of a smoke variant (a
    tiny run for tests): 3 clients, batch 16, 2 rounds of 1 local epoch,
    a 5-epoch probe, no random baseline, no progress bar, no XLA costs."""
    c.fl.num_clients = c.fl.clients_per_round = 3
    c.fl.local_epochs, c.fl.batch_size, c.fl.total_rounds = 1, 16, 2
    c.fl.client_execution = 'map'    # fastest on CPU (environment-notes §4)
    c.eval.probe_epochs = 5
    c.eval.random_baseline = False
    c.log.progress = False
    c.log.step_flops = 'none'


def base(method: str = 'mocov3') -> ml_collections.ConfigDict:
    """The paper's CIFAR/COCO ViT-Tiny defaults for `method` (unlocked)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.mode = 'layerwise'            # e2e | layerwise | progressive (stages.py)
    c.blocks_per_stage = 1          # 1, 2, 3, 4, 6 for depth 12 (Table 3)

    # ViT-Tiny with MoCo v3's fixed sine-cosine positions (models/vit.py);
    # the paper's configs send a learned table (cifar10_vit_tiny.py).
    set_model(c, 'vit', image_size=32, patch_size=4, width=192, depth=12,
              num_heads=3, mlp_dim=768, pos_embed='sincos')

    set_method(c, method)

    c.data = ml_collections.ConfigDict()
    # digits | tfds:<name> | folder:<path> | medmnist:<file.npz> | synthetic
    c.data.source = 'digits'
    c.data.data_dir = config_dict.placeholder(str)   # tfds data_dir
    c.data.download = False         # tfds downloads only when asked
    c.data.cache_dir = config_dict.placeholder(str)  # folder: decoded-array cache
    c.data.partition = 'uniform'    # uniform | dirichlet (paper default: uniform)
    c.data.dirichlet_alpha = 0.5
    c.data.partition_seed = 0       # separate from the model seed on purpose
    c.data.synthetic_train = 512
    c.data.synthetic_test = 128
    # Server-side public set held out from the training split before
    # partitioning (FedCA's alignment module); 0 = none.
    c.data.public_size = 0
    c.data.public_base_epochs = 20  # server's base model on the public set

    # Two-view augmentation: the fields and MoCo v3 defaults of
    # data/augment.py AugmentConfig (one source of truth, no drift).
    c.augment = augment.AugmentConfig()._asdict()

    c.fl = ml_collections.ConfigDict()
    c.fl.num_clients = 10
    c.fl.clients_per_round = 10     # K <= num_clients; sampled without replacement
    c.fl.local_epochs = 3           # E
    c.fl.batch_size = 512           # B per client step
    c.fl.total_rounds = 180         # R, split equally over the stages
    c.fl.client_execution = 'vmap'  # vmap | map | chunked | auto (federated/execution.py)
    c.fl.client_chunk = 0           # clients per vmapped chunk for 'chunked'
    # 'auto' only: GiB (2^30 B) the compiled round may use to pick its chunk;
    # 0 = 0.8 x what the device reports (accelerator bytes_limit, CPU MemAvailable).
    c.fl.memory_budget_gib = 0.0
    c.fl.mesh_devices = 1           # split clients over devices: 1 none, -1 all
    c.fl.algorithm = 'fedavg'       # fedavg | fedu | fedema | fedca (federated/algorithms)
    c.fl.local_parts = ()           # trained but never exchanged (e.g. ('predictor',))
    c.fl.addons = ()                # loss add-ons: ('pa',), ('ra',) (Table 6)
    c.fl.dropout = 0.0              # each sampled client fails to report w.p. p (Table 8)
    c.fl.depth_dropout = 0.0        # each frozen block skipped w.p. p per client-round (DD)

    c.addons = ml_collections.ConfigDict(ADDON_DEFAULTS)

    c.algorithms = ml_collections.ConfigDict(ALGORITHM_DEFAULTS)

    # The server: how uploads are combined (aggregator) and an optional optax
    # optimiser on the aggregate (pseudo-gradient global - aggregate):
    # none = plain aggregate, sgd (+momentum) = FedAvgM, adam = FedAdam.
    c.server = ml_collections.ConfigDict()
    c.server.aggregator = 'fedavg'  # fedavg | ldawa
    c.server.optimizer = 'none'     # none | sgd | adam
    c.server.learning_rate = 1.0
    c.server.momentum = 0.0
    c.server.b1 = 0.9
    c.server.b2 = 0.99
    c.server.eps = 1e-3
    c.aggregators = ml_collections.ConfigDict(AGGREGATOR_DEFAULTS)

    c.optim = ml_collections.ConfigDict()
    c.optim.base_lr = 1.5e-4        # lr = base_lr * batch_size / 256
    c.optim.weight_decay = 1e-5
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    # Dtype of the client step's forward / backward: float32 | bfloat16
    # (params, optimiser state, EMA target, norm statistics, softmax and
    # loss stay float32; federated/client.py).
    c.optim.compute_dtype = 'float32'
    # Rematerialise the trainable blocks in the backward pass to save
    # activation memory: none | blocks | dots_saveable (models/backbone.py).
    c.optim.remat = 'none'
    # Differentiate a per-view loss (MoCo v3, BYOL) one view after the other:
    # half the activation memory, same numbers; False differentiates both
    # views jointly, faster for tiny steps on CPU (federated/views.py).
    c.optim.views_in_turn = True

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
    # What runs at stage ends and at the end (evaluation/protocols.py): knn |
    # linear_probe | finetune. Fine-tuning takes minutes per dataset, so it
    # is run after training by `python -m lwfedssl_jax.evaluate --protocol finetune`.
    c.eval.protocols = ('knn', 'linear_probe')
    # Labelled sources in data.source syntax (e.g. ('tfds:cifar100',
    # 'folder:/data/caltech101')), at model.image_size; metric keys become
    # '<short name>/knn_top1'. Empty = the pre-training source, keys unprefixed.
    c.eval.datasets = ()
    # The paper's downstream protocol (paper notes §6): encoder + linear head
    # trained end to end (evaluation/finetune.py).
    c.eval.finetune = ml_collections.ConfigDict()
    c.eval.finetune.epochs = 40
    c.eval.finetune.warmup_epochs = 10        # linear warm-up, then cosine to 0
    c.eval.finetune.batch_size = 256
    c.eval.finetune.learning_rate = 1e-3      # AdamW peak
    c.eval.finetune.weight_decay = 1e-5
    c.eval.finetune.randaugment_ops = 2       # torchvision RandAugment(2, 9); 0 = none
    c.eval.finetune.randaugment_magnitude = 9  # bin of 31
    c.eval.finetune.train_subset = 0          # 0 = all; else a seeded class-stratified subset

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
    c.log.progress = True           # a bar per stage on a terminal, else a line per round
    c.log.step_flops = 'every_stage'  # every_stage | last_stage | none: XLA
                                      # cost_analysis of one client step
    return c
