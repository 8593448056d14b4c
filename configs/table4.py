"""Paper Table 4: the staged ResNet-18 encoder (MoCo v3; S = 4, R = 120, R_s = 30).

    python -m lwfedssl_jax.resources --config configs/table4.py:stem=imagenet
    python -m lwfedssl_jax.main --config configs/table4.py:mode=layerwise \\
        --config.data.data_dir=~/tensorflow_datasets --workdir runs/t4_lw

The paper's main setting (cifar10_vit_tiny.py: 10 clients, 3 local epochs,
batch 512, AdamW lr 1.5e-4 x 512/256, τ 0.05, µ 0.99) with ResNet-18 as the
encoder: four residual stages, one per stage (stage 1 holds the stem), 120
rounds, 30 per stage, GroupNorm (models/resnet.py says why), and between
stages a temporary bias-free linear layer from the top stage's width (64,
128, 256) to the heads' 512 (paper §3.3), trained and exchanged in its
stage. MoCo v3's ResNet predictor: no final BatchNorm.

`stem`: cifar (default: 3x3 convolution, no max-pool, the model for 32x32
images) or imagenet (7x7 stride 2 + max-pool: torchvision's model, whose
forward cost the paper's GFLOPs count; experiments/backbones/README.md).

Args (`:key=value,...`): mode, stem (cifar | imagenet), source (default
tfds:cifar10), scale = paper (default, the settings above) | cpu (the
CPU-scale main study of configs/cifar10_cpu.py via configs/table2.py
`cpu_config`: real CIFAR-10 images from the folder `path` at 16 px, 2
clients, with the quickstart's quarter-width ResNet-18 (16 to 128 channels,
8 norm groups; the full width trains ~19x slower than the ViT here,
experiments/backbones/README.md), 1 local epoch and 16 rounds (4 stages of
4)) | smoke (a tiny run for tests:
width 8 at 16 px, 96 synthetic images); smoke (same as scale=smoke); path
(cpu scale: the image folder); seed.
"""

from configs import common, table2
from lwfedssl_jax.errors import ConfigError

SCALES = ('paper', 'cpu', 'smoke')


def get_config(arg=None):
    a = common.parse_arg(arg, mode='layerwise', stem='cifar', source='tfds:cifar10',
                         smoke=False, scale='paper', path=table2.CPU_PATH, seed=0)
    if a.scale not in SCALES:
        raise ConfigError(':scale', a.scale, f'unknown; choices: {SCALES}.')
    if a.scale == 'cpu' and not a.smoke:
        c = table2.cpu_config('mocov3', a.mode, a.path, a.seed)
        common.set_model(c, 'resnet18', stem=a.stem, image_size=16, width=16, norm_groups=8)
        common.set_method(c, 'mocov3', **{**c.ssl.kwargs,
                                          'pred_last_bn': common.PRED_LAST_BN['resnet18']})
        # A ResNet step costs ~10x a ViT step here (0.53 s at batch 64, measured
        # 2026-11-24): 1 local epoch and 16 rounds (4 per stage) keep a row
        # near 20 minutes instead of 2 hours.
        c.fl.local_epochs, c.fl.total_rounds = 1, 16
        c.lock()
        return c
    c = common.base('mocov3')
    c.seed = a.seed
    c.mode = a.mode
    common.set_model(c, 'resnet18', stem=a.stem)   # 32 px, width 64, 32 groups
    common.set_method(c, 'mocov3', pred_last_bn=common.PRED_LAST_BN['resnet18'])
    c.fl.total_rounds = 120
    c.data.source = a.source
    c.eval.at_stage_end = False
    c.accounting.examples_per_client = 5000   # CIFAR-10's 50,000 over 10 clients
    if a.smoke or a.scale == 'smoke':
        common.set_model(c, 'resnet18', stem=a.stem, image_size=16, width=8, norm_groups=4)
        common.set_method(c, 'mocov3', proj_hidden=32, proj_dim=16, pred_hidden=32,
                          pred_last_bn=common.PRED_LAST_BN['resnet18'])
        c.data.source = 'synthetic'
        c.data.synthetic_train, c.data.synthetic_test = 96, 32
        common.set_smoke_run(c)
        c.fl.total_rounds = 4
    c.lock()
    return c
