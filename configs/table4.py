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
tfds:cifar10), smoke.
"""

from configs import common


def get_config(arg=None):
    a = common.parse_arg(arg, mode='layerwise', stem='cifar', source='tfds:cifar10',
                         smoke=False)
    c = common.base('mocov3')
    c.mode = a.mode
    common.set_model(c, 'resnet18', stem=a.stem)   # 32 px, width 64, 32 groups
    common.set_method(c, 'mocov3', pred_last_bn=common.PRED_LAST_BN['resnet18'])
    c.fl.total_rounds = 120
    c.data.source = a.source
    c.eval.at_stage_end = False
    c.accounting.examples_per_client = 5000   # CIFAR-10's 50,000 over 10 clients
    if a.smoke:
        common.set_model(c, 'resnet18', stem=a.stem, width=8, norm_groups=4)
        common.set_method(c, 'mocov3', proj_hidden=32, proj_dim=16, pred_hidden=32,
                          pred_last_bn=common.PRED_LAST_BN['resnet18'])
        c.data.source = 'synthetic'
        common.set_smoke_run(c)
        c.fl.total_rounds = 4
    c.lock()
    return c
