"""Quickstart: federated MoCo v3 on scikit-learn's bundled digits (no download).

    python -m lwfedssl_jax.quickstart                    # all three modes + table
    python -m lwfedssl_jax.main --config configs/quickstart.py:mode=layerwise --workdir runs/qs

A small ViT (16x16 digits, patch 4, width 64, depth 4, 4 heads) trained by 4
clients. Departures from the paper's defaults, chosen for a few CPU minutes
on 1,347 tiny images (environment-notes §9): temperature 0.2 (0.05 was less
stable at this scale), lr 2e-3 with weight decay 0.1, smaller heads, digit
augmentations (no flip: digits are not flip-invariant; small rotations).

With `:model=resnet18`, the staged ResNet-18 of Table 4 (models/resnet.py:
CIFAR stem, four residual stages, GroupNorm) at a quarter of its width (16
to 128 channels, 8 norm groups) so that it trains in CPU minutes too; MoCo
v3's ResNet predictor (no final BatchNorm).

Args (`:key=value,...`): method (mocov3 | byol | simclr), mode (e2e |
layerwise | progressive), model (vit | resnet18), smoke (tiny run for tests).
"""

from configs import common
from lwfedssl_jax import models
from lwfedssl_jax.data import augment
from lwfedssl_jax.errors import ConfigError, did_you_mean


# The quickstart's backbones: fields, and their changes for a smoke run.
BACKBONES = {
    'vit': (dict(image_size=16, patch_size=4, width=64, depth=4, num_heads=4, mlp_dim=256),
            dict(width=32, depth=2, num_heads=2, mlp_dim=64)),
    'resnet18': (dict(image_size=16, width=16, norm_groups=8),
                 dict(width=8, norm_groups=4)),
}


def get_config(arg=None):
    a = common.parse_arg(arg, method='mocov3', mode='layerwise', model='vit',
                         smoke=False)
    c = common.base()
    c.mode = a.mode
    if a.model not in BACKBONES:
        raise ConfigError(':model', a.model, f'unknown; choices: {sorted(BACKBONES)}.'
                          + did_you_mean(a.model, BACKBONES))
    fields, smoke_fields = BACKBONES[a.model]
    pred_last_bn = common.PRED_LAST_BN[a.model]
    common.set_model(c, a.model, **{**fields, **(smoke_fields if a.smoke else {})})
    common.set_method(c, a.method, temperature=0.2, proj_hidden=256, proj_dim=64,
                      pred_hidden=256, pred_last_bn=pred_last_bn)
    c.data.source = 'digits'
    c.augment = augment.DIGITS._asdict()   # no flip/blur/solarize/colour
    c.fl.num_clients = 4
    c.fl.clients_per_round = 4
    c.fl.local_epochs = 1
    c.fl.batch_size = 64
    c.fl.total_rounds = 16
    c.fl.client_execution = 'map'    # fastest on CPU (environment-notes §4)
    c.optim.base_lr = 2e-3 * 256 / 64   # lr 2e-3 at batch 64
    c.optim.weight_decay = 0.1
    c.optim.b2 = 0.95
    c.eval.probe_epochs = 100
    c.log.step_flops = 'last_stage'
    if a.smoke:
        common.set_method(c, a.method, temperature=0.2, proj_hidden=32, proj_dim=16,
                          pred_hidden=32, pred_last_bn=pred_last_bn)
        c.data.source = 'synthetic'
        c.data.synthetic_train = 96
        c.data.synthetic_test = 32
        common.set_smoke_run(c)
        # One round per stage of a layer-wise run (at least the smoke's 2).
        c.fl.total_rounds = max(2, models.make_backbone(c.model.to_dict()).depth)
    c.lock()
    return c
