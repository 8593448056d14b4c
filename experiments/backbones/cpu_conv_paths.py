"""The two XLA:CPU convolution slow paths that models/resnet.py works around,
timed side by side in one process.

    python experiments/backbones/cpu_conv_paths.py

1. A 3x3 512->512 convolution at batch 64 on 2x2 maps vs 4x4 maps, and the
   same 2x2 one as patches x matmul.
2. The weight gradient of a 3x3 64->64 convolution on 16x16 maps at batch
   64, four times: outside a loop, inside a `lax.scan`, and inside a scan
   computed as patches x gradient (what `models/conv.py` does on CPU).
3. Two SGD steps of ResNet-18 (CIFAR stem, width 64, 16x16 inputs, batch
   64) inside a `lax.scan`, with `conv.conv2d` against plain
   `lax.conv_general_dilated` everywhere.
Prints milliseconds per call (median of 3, after a warm-up).
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..'))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from lwfedssl_jax import models, platform  # noqa: E402
from lwfedssl_jax.models import conv, resnet  # noqa: E402

DIMS = ('NHWC', 'HWIO', 'NHWC')


def ms(fn, *args) -> float:
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(3):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def plain(x, w, stride=1):
    pad = ((w.shape[0] - 1) // 2,) * 2
    return jax.lax.conv_general_dilated(x, w, (stride, stride), (pad, pad),
                                        dimension_numbers=DIMS)


def main():
    platform.setup()
    w = jnp.ones((3, 3, 512, 512)) * 1e-3
    rows = [('3x3 512->512 conv, 2x2 maps', ms(plain, jnp.ones((64, 2, 2, 512)), w)),
            ('3x3 512->512 conv, 4x4 maps', ms(plain, jnp.ones((64, 4, 4, 512)), w)),
            ('3x3 512->512 conv, 2x2 maps, patches x matmul',
             ms(lambda x, w: conv._patches(x, 3, 1) @ conv._as_matrix(w),
                jnp.ones((64, 2, 2, 512)), w))]
    x, w = jnp.ones((64, 16, 16, 64)), jnp.ones((3, 3, 64, 64)) * 1e-2
    steps = jnp.arange(4.0)

    def wgrad(conv):
        return jax.grad(lambda w, x: jnp.sum(conv(x, w) ** 2))

    rows += [
        ('4 weight gradients, no loop',
         ms(lambda x, w: sum(wgrad(plain)(w, x + i) for i in range(4)), x, w)),
        ('4 weight gradients in a lax.scan',
         ms(lambda x, w: jax.lax.scan(lambda c, i: (c + wgrad(plain)(w, x + i), None),
                                      jnp.zeros_like(w), steps)[0], x, w)),
        ('4 weight gradients in a lax.scan, patches x gradient',
         ms(lambda x, w: jax.lax.scan(lambda c, i: (c + wgrad(
             lambda x_, w_: conv.conv2d(x_, w_, 1))(w, x + i), None),
             jnp.zeros_like(w), steps)[0], x, w))]
    enc = models.make_backbone({'name': 'resnet18', 'image_size': 16, 'stem': 'cifar',
                                'width': 64, 'norm_groups': 32})
    params = enc.init(jax.random.key(0))
    images = jax.random.normal(jax.random.key(1), (64, 16, 16, 3))

    def two_steps():
        # A new function each time: jit caches traces by function.
        def run(params):
            grad = jax.grad(lambda p: jnp.sum(enc.features(p, images, 4) ** 2))
            body = lambda p, _: (jax.tree.map(lambda a, g: a - 1e-3 * g, p, grad(p)), None)
            return jax.lax.scan(body, params, None, length=2)[0]
        return run

    rows.append(('ResNet-18, 2 SGD steps in a lax.scan (conv.conv2d)',
                 ms(two_steps(), params)))
    original = resnet.conv2d
    resnet.conv2d = lambda x, w, stride: plain(x, w, stride)
    try:
        rows.append(('ResNet-18, 2 SGD steps in a lax.scan (plain XLA convolutions)',
                     ms(two_steps(), params)))
    finally:
        resnet.conv2d = original
    print(f'| case ({jax.device_count()} x {jax.devices()[0].platform}) | ms |\n|---|---|')
    for name, t in rows:
        print(f'| {name} | {t:.0f} |')


if __name__ == '__main__':
    main()
