"""The CPU-scale main study (Table 2's MoCo v3 rows on real CIFAR-10, issue 13).

    python experiments/backbones/make_cifar_subset.py --out /tmp/c10cpu --train 1000 --test 500
    python -m lwfedssl_jax.main --config configs/cifar10_cpu.py:mode=layerwise,seed=0 \\
        --workdir runs/c10cpu/layerwise_s0

Pre-training reads the 10,000 training images of the folder (1,000 per class;
the SSL loss never sees a label and the partition is uniform, so labels are
only used by the evaluation), evaluation uses the 5,000 test images. The
paper's protocol at a size this 2-core CPU trains in tens of minutes per mode:

* a ViT of width 128, depth 4, 4 heads, MLP 256, patch 4 at 16 x 16 px (the
  paper: ViT-Tiny, width 192, depth 12, 32 px), sine-cosine positions;
* **2 clients** of 5,000 images each, both in every round, 2 local epochs per
  round at batch 64 (the paper: 10 clients, 3 epochs, batch 512). A round
  moves the global model by about one client's local steps, so at a fixed
  compute budget fewer clients with more local steps learn more (developers'
  guide, "Real images on 2 CPU cores"); the IID uniform split of the paper
  is kept;
* R rounds (`:rounds`, default 48), split equally over the 4 stages of
  layer-wise / progressive training (one block per stage, as the paper's
  default), e2e trains all 4 blocks for the same R;
* MoCo v3 with the paper's momentum 0.99, a temperature of 0.2 and heads of
  256 / 128 (the paper's 0.05 and 512 / 256 are tuned for ViT-Tiny at batch
  512), AdamW lr 1e-3 at batch 64 (base_lr 4e-3 x 64 / 256), weight decay
  0.05, beta2 0.95 (MoCo v3's ViT recipe) as in `cifar10_small.py`;
* evaluation after training: kNN (k = 20) and a 100-epoch linear probe on the
  frozen class token, plus the random encoder; fine-tuning with
  `python -m lwfedssl_jax.evaluate --protocol finetune`.

Args (`:key=value,...`): mode (e2e | layerwise | progressive), seed, path
(folder tree, default /tmp/c10cpu), rounds, clients.
"""

from configs import common


def get_config(arg=None):
    a = common.parse_arg(arg, mode='layerwise', seed=0, path='/tmp/c10cpu', rounds=48,
                         clients=2)
    c = common.base('mocov3')
    c.seed = a.seed
    c.mode = a.mode
    common.set_model(c, 'vit', image_size=16, patch_size=4, width=128, depth=4,
                     num_heads=4, mlp_dim=256, pos_embed='sincos')
    common.set_method(c, 'mocov3', temperature=0.2, proj_hidden=256, proj_dim=128,
                      pred_hidden=256)
    c.data.source = f'folder:{a.path}'
    c.fl.num_clients = c.fl.clients_per_round = a.clients
    c.fl.local_epochs = 2
    c.fl.batch_size = 64
    c.fl.total_rounds = a.rounds
    c.fl.client_execution = 'map'    # one client at a time: fastest on 2 cores
    c.optim.base_lr = 1e-3 * 256 / 64
    c.optim.weight_decay = 0.05
    c.optim.b2 = 0.95
    c.eval.at_stage_end = False
    c.checkpoint.every_rounds = 2    # resumable; a save is ~1% of a round here
    c.log.step_flops = 'none'
    c.log.progress = False
    c.lock()
    return c
