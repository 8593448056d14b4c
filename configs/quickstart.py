"""Quickstart: federated MoCo v3 on scikit-learn's bundled digits (no download).

    python -m lwfedssl_jax.quickstart                    # all three modes + table
    python -m lwfedssl_jax.main --config configs/quickstart.py:mode=layerwise --workdir runs/qs

A small ViT (16x16 digits, patch 4, width 64, depth 4, 4 heads) trained by 4
clients. Departures from the paper's defaults, chosen for a few CPU minutes
on 1,347 tiny images (environment-notes §9): temperature 0.2 (0.05 was less
stable at this scale), lr 2e-3 with weight decay 0.1, smaller heads, digit
augmentations (no flip: digits are not flip-invariant; small rotations).

Args (`:key=value,...`): method (mocov3 | byol | simclr), mode (e2e |
layerwise | progressive), smoke (tiny run for tests).
"""

from configs import common
from lwfedssl_jax.data import augment


def get_config(arg=None):
    a = common.parse_arg(arg, method='mocov3', mode='layerwise', smoke=False)
    c = common.base()
    c.mode = a.mode
    c.model = dict(image_size=16, patch_size=4, width=64, depth=4,
                   num_heads=4, mlp_dim=256)
    common.set_method(c, a.method, temperature=0.2, proj_hidden=256, proj_dim=64,
                      pred_hidden=256)
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
        c.model.depth = 2
        c.model.width = 32
        c.model.mlp_dim = 64
        c.model.num_heads = 2
        common.set_method(c, a.method, temperature=0.2, proj_hidden=32, proj_dim=16,
                          pred_hidden=32)
        c.data.source = 'synthetic'
        c.data.synthetic_train = 96
        c.data.synthetic_test = 32
        common.set_smoke_run(c)
    c.lock()
    return c
