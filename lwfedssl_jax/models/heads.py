"""SSL heads: MoCo v3 / BYOL projector and predictor MLPs (paper §2.1).

Projector H: D -> 512 -> 512 -> 256, predictor P: 256 -> 512 -> 256 (defaults
of the paper). Hidden layers are Linear(no bias) + BatchNorm + ReLU; the
projector ends in a BatchNorm without affine parameters and the predictor in
a plain Linear (MoCo v3 convention, paper §2.1 "BatchNorm inside the heads").

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
    """Normalises `[B, F]` over the batch axis with batch statistics only."""
    use_affine: bool = True
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        mean = jnp.mean(x, axis=0, keepdims=True)
        var = jnp.var(x, axis=0, keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        if self.use_affine:
            y = y * self.param('scale', nn.initializers.ones, (x.shape[-1],))
            y = y + self.param('bias', nn.initializers.zeros, (x.shape[-1],))
        return y


class MLPHead(nn.Module):
    """Linear(+BN+ReLU) x (n-1), final Linear, optional final BN (no affine).

    `[B, D_in]` -> `[B, dims[-1]]`. With `batch_norm=False` hidden layers are
    Linear(bias) + ReLU (useful for tests with batch size 1).
    """
    dims: Sequence[int]
    last_batch_norm: bool = False
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
        x = nn.Dense(self.dims[-1], use_bias=not self.last_batch_norm,
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
                   batch_norm: bool = True) -> MLPHead:
    """MoCo v3 predictor: `num_layers` linear layers, plain final Linear."""
    return MLPHead(dims=(hidden,) * (num_layers - 1) + (out,),
                   last_batch_norm=False, batch_norm=batch_norm)
