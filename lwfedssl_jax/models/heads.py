"""SSL heads: MoCo v3 / BYOL projector and predictor MLPs (paper §2.1).

Projector H: D -> 512 -> 512 -> 256, predictor P: 256 -> 512 -> 256 (defaults
of the paper). MoCo v3's `_build_mlp`: hidden layers are Linear(no bias) +
BatchNorm + ReLU, and every Linear is bias-free; the projector's last Linear
is followed by a BatchNorm without affine parameters; so is the predictor's
with MoCo v3's ViT model (`last_batch_norm=True`), while its ResNet model
ends the predictor in the bias-free Linear (`last_bias=False`). BYOL's
predictor ends in a Linear with bias (the default).

BatchNorm here always normalises with the statistics of the current batch and
keeps **no running averages**: the heads are discarded after pre-training
(paper §3.2), so running statistics would be dead state that FedAvg would
have to average and checkpoints would have to carry. This is why
`BatchStatNorm` exists instead of `flax.linen.BatchNorm` (which needs a
mutable `batch_stats` collection).
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

_dense_init = nn.initializers.xavier_uniform()


class BatchStatNorm(nn.Module):
    """Normalises `[B, F]` over the batch axis with batch statistics only.

    The statistics and the affine map run in float32 whatever `x`'s dtype
    (bfloat16 under `optim.compute_dtype`); the output has `x`'s dtype.
    """
    use_affine: bool = True
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        xf = x.astype(jnp.float32)
        mean = jnp.mean(xf, axis=0, keepdims=True)
        var = jnp.var(xf, axis=0, keepdims=True)
        y = (xf - mean) * jax.lax.rsqrt(var + self.epsilon)
        if self.use_affine:
            scale = self.param('scale', nn.initializers.ones, (x.shape[-1],))
            bias = self.param('bias', nn.initializers.zeros, (x.shape[-1],))
            y = y * scale.astype(jnp.float32) + bias.astype(jnp.float32)
        return y.astype(x.dtype)


class MLPHead(nn.Module):
    """Linear(+BN+ReLU) x (n-1), final Linear, optional final BN (no affine).

    `[B, D_in]` -> `[B, dims[-1]]`. With `batch_norm=False` hidden layers are
    Linear(bias) + ReLU (useful for tests with batch size 1).
    """
    dims: Sequence[int]
    last_batch_norm: bool = False
    last_bias: bool = True
    batch_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, d in enumerate(self.dims[:-1]):
            x = nn.Dense(d, use_bias=not self.batch_norm,
                         kernel_init=_dense_init, name=f'fc_{i}')(x)
            if self.batch_norm:
                x = BatchStatNorm(name=f'bn_{i}')(x)
            x = nn.relu(x)
        last = len(self.dims) - 1
        x = nn.Dense(self.dims[-1], use_bias=self.last_bias and not self.last_batch_norm,
                     kernel_init=_dense_init, name=f'fc_{last}')(x)
        if self.last_batch_norm:
            x = BatchStatNorm(use_affine=False, name=f'bn_{last}')(x)
        return x


def make_projector(hidden: int, out: int, num_layers: int = 3,
                   batch_norm: bool = True) -> MLPHead:
    """MoCo v3 projector: `num_layers` linear layers, final BN without affine."""
    return MLPHead(dims=(hidden,) * (num_layers - 1) + (out,),
                   last_batch_norm=batch_norm, batch_norm=batch_norm)


def make_predictor(hidden: int, out: int, num_layers: int = 2,
                   batch_norm: bool = True, last_batch_norm: bool = False,
                   last_bias: bool = True) -> MLPHead:
    """MoCo v3 predictor: `num_layers` linear layers; the last one is a plain
    Linear (with bias unless `last_bias=False`), or with `last_batch_norm`
    bias-free + BN without affine (MoCo v3's ViT predictor)."""
    return MLPHead(dims=(hidden,) * (num_layers - 1) + (out,),
                   last_batch_norm=batch_norm and last_batch_norm, batch_norm=batch_norm,
                   last_bias=last_bias)
