"""Client-side local training (paper Algorithm 2), as pure jittable functions.

Three layers, each built once per stage:

* `make_local_step`: ONE optimiser step of one client on one batch. The frozen
  prefix runs forward-only under `stop_gradient`, once per view, and its
  output is shared by the online and target branches; `jax.grad` is taken
  with respect to the trainable parts only. This is what makes layer-wise
  training really cheaper (memory and FLOPs), not just masked.
* `make_local_train`: E local epochs of one client as a `lax.scan` over
  steps, with the target branch rebuilt from the received weights and the
  optimiser state reset at the start (paper §1.7, §5 "assumed reset").
* `make_clients_update`: all participating clients, executed by `vmap`,
  `lax.map` (sequential inside jit) or chunked `lax.map(batch_size=...)`.

Ragged client datasets: client c with n_c examples does
`E * ceil(n_c / B)` steps. Each epoch is a fresh permutation of its examples;
the last batch of an epoch is completed by wrapping around that permutation,
so every batch has B real examples (contrastive negatives stay meaningful).
All clients scan for the same `S = E * ceil(n_max / B)` steps (one compiled
shape); a client's steps past its own count are skipped (`lax.cond`: the
carry passes through unchanged).
"""

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lwfedssl_jax.data import augment
from lwfedssl_jax.models.vit import ViTEncoder
from lwfedssl_jax.ssl.base import SSLMethod
from lwfedssl_jax.ssl.ema import ema_update
from lwfedssl_jax.stages import StageSpec
from lwfedssl_jax.utils.tree import select

EXECUTIONS = ('vmap', 'map', 'chunked')


class LocalStep(NamedTuple):
    """One client optimiser step and the pieces needed to run it.

    `step(frozen, trainable, target, opt_state, images, key)` ->
    `(trainable, target, opt_state, loss)` with images `[B, H, W, 3]` uint8.
    """
    step: Callable
    init_opt: Callable      # (frozen, trainable) -> opt_state
    init_target: Callable   # (trainable) -> target dict, or None


def make_client_optimizer(spec: StageSpec, *, learning_rate: float,
                          weight_decay: float, b1: float,
                          b2: float) -> optax.GradientTransformation:
    """AdamW on trainable parts, `set_to_zero` on frozen ones.

    The engine already differentiates only the trainable subtree, so frozen
    gradients are structurally zero; `optax.partition` is the safety net that
    guarantees no update (nor weight decay) can ever reach a frozen part.
    Its state holds nothing for the frozen parts.
    """
    trainable = set(spec.trainable)
    return optax.partition(
        {'train': optax.adamw(learning_rate, b1=b1, b2=b2,
                              weight_decay=weight_decay),
         'freeze': optax.set_to_zero()},
        lambda params: {k: jax.tree.map(
            lambda _: 'train' if k in trainable else 'freeze', v)
            for k, v in params.items()})


def make_local_step(encoder: ViTEncoder, method: SSLMethod, spec: StageSpec,
                    tx: optax.GradientTransformation,
                    augment_cfg: augment.AugmentConfig) -> LocalStep:
    """Builds one client step for stage `spec` (see module docstring)."""
    target_parts = tuple(p for p in spec.trainable
                         if p not in method.head_names
                         or p in method.target_head_names)

    def encode_fn(params, h):
        # Trainable segment on top of the frozen prefix, then the pooled token.
        tokens = encoder.run_segment(params, h, spec.frozen_blocks,
                                     spec.num_blocks)
        return encoder.pool(params, tokens)

    def prefix(frozen, view):
        # Frozen blocks [0, frozen_blocks): identity when nothing is frozen.
        return jax.lax.stop_gradient(
            encoder.run_segment(frozen, view, 0, spec.frozen_blocks))

    def init_target(trainable):
        if method.momentum is None:
            return None
        return select(trainable, target_parts)

    def init_opt(frozen, trainable):
        return tx.init({**frozen, **trainable})

    def step(frozen, trainable, target, opt_state, images, key):
        v1, v2 = augment.two_views(key, images, augment_cfg)
        h1, h2 = prefix(frozen, v1), prefix(frozen, v2)

        def loss_of(online):
            return method.loss_fn(online, target, encode_fn, h1, h2)

        (loss, _), grads = jax.value_and_grad(loss_of, has_aux=True)(trainable)
        params = {**frozen, **trainable}
        grads = {**jax.tree.map(jnp.zeros_like, frozen), **grads}
        updates, opt_state = tx.update(grads, opt_state, params)
        trainable = select(optax.apply_updates(params, updates), spec.trainable)
        if target is not None:
            target = ema_update(target, trainable, method.momentum)
        return trainable, target, opt_state, loss

    return LocalStep(step=step, init_opt=init_opt, init_target=init_target)


def num_local_steps(num_examples: int, batch_size: int, epochs: int) -> int:
    """Steps of a client holding `num_examples`: E * ceil(n / B)."""
    return epochs * math.ceil(num_examples / batch_size)


def make_local_train(local: LocalStep, spec: StageSpec, *, batch_size: int,
                     epochs: int, max_examples: int) -> Callable:
    """One client's local training for one round.

    Returns `local_train(frozen, exchanged, images, num_examples, key)` ->
    `(exchanged, metrics)` where:
      frozen: present parts not exchanged (the frozen prefix), shared.
      exchanged: parts received from the server this round.
      images: `[N_max, H, W, 3]` uint8, the client's (padded) examples.
      num_examples: scalar int32 n_c <= N_max (rows past it are padding).
      key: the client's round key.
      metrics: {'loss': mean loss over the client's steps, 'steps': count}.
    """
    scan_steps = num_local_steps(max_examples, batch_size, epochs)

    def local_train(frozen, exchanged, images, num_examples, key):
        perm_key, aug_key = jax.random.split(key)
        n = num_examples
        steps_per_epoch = (n + batch_size - 1) // batch_size
        # [E, N_max]: per-epoch permutations of the n valid rows (padding
        # rows get key 2.0 > any uniform, so they sort last).
        valid_row = jnp.arange(max_examples) < n
        perms = jnp.argsort(jnp.where(
            valid_row, jax.random.uniform(perm_key, (epochs, max_examples)), 2.0),
            axis=-1)
        received = {**frozen, **exchanged}
        trainable = select(received, spec.trainable)
        carry0 = (trainable, local.init_target(trainable),
                  local.init_opt(frozen, trainable))

        def body(carry, k):
            epoch = jnp.minimum(k // steps_per_epoch, epochs - 1)
            pos = (k % steps_per_epoch) * batch_size + jnp.arange(batch_size)
            idx = perms[epoch][pos % n]
            active = k < epochs * steps_per_epoch

            def run(c):
                tr, tg, op, loss = local.step(frozen, *c, images[idx],
                                              jax.random.fold_in(aug_key, k))
                return (tr, tg, op), loss.astype(jnp.float32)

            carry, loss = jax.lax.cond(
                active, run, lambda c: (c, jnp.zeros((), jnp.float32)), carry)
            return carry, loss

        (trainable, _, _), losses = jax.lax.scan(body, carry0,
                                                 jnp.arange(scan_steps))
        steps = epochs * steps_per_epoch
        out = select({**received, **trainable}, spec.exchanged)
        return out, {'loss': losses.sum() / steps, 'steps': steps}

    return local_train


def make_clients_update(local_train: Callable, execution: str = 'vmap',
                        chunk: int = 0) -> Callable:
    """All participating clients of a round.

    Returns `clients_update(frozen, exchanged, images, sizes, keys)` where
    images `[K, N_max, H, W, 3]`, sizes `[K]`, keys `[K]` are per client and
    frozen/exchanged are broadcast; outputs are stacked `[K, ...]`.

    Args:
      execution: 'vmap' (parallel; the accelerator default), 'map'
        (`lax.map`, sequential inside jit: less memory, faster on CPU) or
        'chunked' (`lax.map` over chunks of `chunk` clients, vmapped within).
      chunk: clients per vmapped chunk for 'chunked' (>= 1).
    """
    if execution not in EXECUTIONS:
        raise ValueError(f'Unknown fl.client_execution {execution!r}; '
                         f'choices: {EXECUTIONS}.')
    if execution == 'chunked' and chunk < 1:
        raise ValueError('fl.client_execution=chunked needs fl.client_chunk >= 1 '
                         f'(got {chunk}).')

    def clients_update(frozen, exchanged, images, sizes, keys):
        if execution == 'vmap':
            return jax.vmap(local_train, in_axes=(None, None, 0, 0, 0))(
                frozen, exchanged, images, sizes, keys)
        per_client = lambda xs: local_train(frozen, exchanged, *xs)
        return jax.lax.map(per_client, (images, sizes, keys),
                           batch_size=chunk if execution == 'chunked' else None)

    return clients_update
