"""The paper's main setting: ViT-Tiny, MoCo v3, 10 clients, 12 stages x 15 rounds.

    python -m lwfedssl_jax.main --workdir runs/c10_lw \
        --config configs/cifar10_vit_tiny.py:mode=layerwise \
        --config.data.data_dir=~/tensorflow_datasets

Paper §5: 32x32 images, patch 4, 12 blocks of width 192, 3 local epochs,
batch 512, AdamW lr 1.5e-4 x 512/256, weight decay 1e-5, τ 0.05, µ 0.99,
R = 180 rounds (R_s = 180 / stages), uniform split over 10 clients, all
participating. The paper pre-trains on COCO; CIFAR-10 stands in here (paper
§7 evaluates on it). `data.source` accepts `folder:<path>` for the JPEG tree
of `cifar10-jpeg.tar.gz`.

A GPU/TPU run (clients vmapped). On a 2-core CPU one e2e client step at
batch 512 takes seconds: use `:smoke` there.

Position embedding: learned, trained and exchanged with the patch embedding
(`model.pos_embed='learned'`). The paper does not say which table it uses,
but its communication figures count a [65, 192] position table in every
exchange of the embedding (paper notes §1.4, §7.1: 8.40 / 1.66 / 5.04
"GB"); MoCo v3's fixed sine-cosine table, the engine's default, is a
constant that never travels (`:pos_embed=sincos`: 12,480 fewer values per
exchange of the embedding, 0.017 "GB" less end to end).

Args (`:key=value,...`): method (mocov3 | byol | simclr), mode,
blocks_per_stage (1, 2, 3, 4, 6; Table 3), source (default tfds:cifar10),
pos_embed (learned | sincos), smoke.
"""

from configs import common


def get_config(arg=None):
    a = common.parse_arg(arg, method='mocov3', mode='layerwise', blocks_per_stage=1,
                         source='tfds:cifar10', pos_embed='learned', smoke=False)
    c = common.base(a.method)
    c.model.pos_embed = a.pos_embed
    c.mode = a.mode
    c.blocks_per_stage = a.blocks_per_stage
    c.data.source = a.source
    c.eval.at_stage_end = False      # features of 50k images per stage is slow
    # CIFAR-10 train split (50,000) over 10 clients, for the compile-only
    # `resources` report (training always uses the real partition).
    c.accounting.examples_per_client = 5000
    if a.smoke:
        c.data.source = 'synthetic'
        c.fl.batch_size = 16
        c.fl.local_epochs = 1
        c.fl.total_rounds = 12
        c.fl.num_clients = 2
        c.fl.clients_per_round = 2
        c.fl.client_execution = 'map'
        c.eval.probe_epochs = 5
        c.eval.random_baseline = False
        c.log.step_flops = 'none'
    c.lock()
    return c
