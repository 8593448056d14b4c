"""Real CIFAR-10 images at a CPU-sized scale (issue 11's before/after runs).

    python experiments/backbones/make_cifar_subset.py     # /tmp/c10sub: 5,000 + 2,000 JPEGs
    python -m lwfedssl_jax.main --config configs/cifar10_small.py:mode=layerwise \\
        --workdir runs/c10s_lw

A small ViT (16x16 images, patch 4, width 128, depth 4, 4 heads) trained by 2
clients holding 2,500 images each, 2 local epochs per round, 12 rounds
(layer-wise: 4 stages x 3 rounds). Few clients and several local steps per
round give a learning signal within minutes on 2 CPU cores (developers'
guide, "Real images on 2 CPU cores"); paper-scale settings stay in
`cifar10_vit_tiny.py`. lr 1e-3 at batch 64, temperature 0.2, smaller heads.

`:model=resnet18` trains the ResNet-18 of Table 4 (CIFAR stem, width 64,
GroupNorm) on the same data and budget; `:pos_embed=learned` the ViT with a
learned position table.

Args (`:key=value,...`): mode, path (folder tree, default /tmp/c10sub),
rounds, method, model (vit | resnet18), pos_embed (sincos | learned).
"""

from configs import common
from lwfedssl_jax.errors import ConfigError, did_you_mean


# The backbones' fields at 16 px (the ViT's position table is an argument).
BACKBONES = {
    'vit': lambda a: dict(image_size=16, patch_size=4, width=128, depth=4, num_heads=4,
                          mlp_dim=256, pos_embed=a.pos_embed),
    'resnet18': lambda a: dict(image_size=16),     # width 64, CIFAR stem, 32 groups
}


def get_config(arg=None):
    a = common.parse_arg(arg, mode='layerwise', path='/tmp/c10sub', rounds=12,
                         method='mocov3', model='vit', pos_embed='sincos')
    c = common.base(a.method)
    c.mode = a.mode
    if a.model not in BACKBONES:
        raise ConfigError(':model', a.model, f'unknown; choices: {sorted(BACKBONES)}.'
                          + did_you_mean(a.model, BACKBONES))
    common.set_model(c, a.model, **BACKBONES[a.model](a))
    common.set_method(c, a.method, temperature=0.2, proj_hidden=256, proj_dim=128,
                      pred_hidden=256, pred_last_bn=common.PRED_LAST_BN[a.model])
    c.data.source = f'folder:{a.path}'
    c.fl.num_clients = c.fl.clients_per_round = 2
    c.fl.local_epochs = 2
    c.fl.batch_size = 64
    c.fl.total_rounds = a.rounds
    c.fl.client_execution = 'map'
    c.optim.base_lr = 1e-3 * 256 / 64
    c.optim.weight_decay = 0.05
    c.optim.b2 = 0.95
    c.eval.at_stage_end = False
    c.log.step_flops = 'none'
    c.log.progress = False
    c.lock()
    return c
