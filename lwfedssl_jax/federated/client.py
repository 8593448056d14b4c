"""Client-side local training (paper Algorithm 2), as pure jittable functions.

Three layers, each built once per stage:

* `make_local_step`: ONE optimiser step of one client on one batch. The frozen
  prefix runs forward-only under `stop_gradient`, once per view, and its
  output is shared by the online and target branches; `jax.grad` is taken
  with respect to the trainable parts only. This is what makes layer-wise
  training really cheaper (memory and FLOPs), not just masked. The SSL loss
  may be extended by the algorithm's extra loss terms. A method whose loss
  is a sum of per-view terms (MoCo v3, BYOL) is differentiated one view
  after the other (`federated/views.py`), so only one view's activations
  are alive at a time.
* `make_local_train`: E local epochs of one client as a `lax.scan` over
  steps. Where training starts (received weights, the client's own state, a
  persistent target) and what is uploaded besides the exchanged parts is the
  federated algorithm's decision (`federated/algorithms/`); the optimiser
  state is reset every round (paper §5 "assumed reset").
* all participating clients together: `federated/execution.py`.

Ragged client datasets: client c with n_c examples does
`E * ceil(n_c / B)` steps. Each epoch is a fresh permutation of its examples;
the last batch of an epoch is completed by wrapping around that permutation,
so every batch has B real examples (contrastive negatives stay meaningful).
All clients scan for the same `S = E * ceil(n_max / B)` steps (one compiled
shape); a client's steps past its own count are skipped (`lax.cond`: the
carry passes through unchanged).

Mixed precision (`optim.compute_dtype='bfloat16'`): parameters, optimiser
state and the EMA target stay float32; inside the step the views, the
frozen prefix's and the online / target branches' parameters are cast to
bfloat16, so the forward and backward matmuls run in bfloat16 and the
gradients arrive in float32 through the casts. LayerNorm / GroupNorm /
BatchNorm statistics, the softmax, the logits and the loss stay float32
(models/, ssl/losses.py), and so do the AdamW and EMA updates.
Rematerialisation (`optim.remat`) applies to the trainable segment's blocks
(`models/backbone.py` `REMAT_POLICIES`); the frozen prefix is never
differentiated, so it has nothing to rematerialise.
"""

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lwfedssl_jax.data import augment
from lwfedssl_jax.errors import ConfigError, did_you_mean
from lwfedssl_jax.federated.algorithms.base import (
    ClientResult, FederatedAlgorithm, TermInputs, Upload, target_parts)
from lwfedssl_jax.federated import views as views_lib
from lwfedssl_jax.models.backbone import Backbone, check_remat
from lwfedssl_jax.ssl.base import SSLMethod
from lwfedssl_jax.ssl.ema import ema_update
from lwfedssl_jax.stages import StageSpec
from lwfedssl_jax.utils.tree import select

DEPTH_DROPOUT_KEY = 2**31 - 2   # fold_in index of a client's drop mask (beyond the split keys)

# `optim.compute_dtype`: the dtype of the client step's forward / backward.
COMPUTE_DTYPES = ('float32', 'bfloat16')


def cast_floats(tree, dtype):
    """`tree` with its floating leaves cast to `dtype` (others unchanged)."""
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def check_compute_dtype(compute_dtype: str) -> jnp.dtype:
    """The jnp dtype of `optim.compute_dtype`.

    Raises:
      ConfigError: not one of `COMPUTE_DTYPES`.
    """
    if compute_dtype not in COMPUTE_DTYPES:
        raise ConfigError('optim.compute_dtype', compute_dtype,
                          f'unknown; choices: {list(COMPUTE_DTYPES)}.'
                          + did_you_mean(str(compute_dtype), COMPUTE_DTYPES))
    return jnp.dtype(compute_dtype)


class LocalStep(NamedTuple):
    """One client optimiser step and the pieces needed to run it.

    `step(frozen, trainable, target, opt_state, images, key, anchor, context,
    momentum)` -> `(trainable, target, opt_state, loss)` with images
    `[B, H, W, 3]` uint8, `anchor` the received exchanged parts, `context` a
    `StepContext` and `momentum` the target's EMA coefficient µ (scalar).
    """
    step: Callable
    init_opt: Callable      # (frozen, trainable) -> opt_state
    init_target: Callable   # (trainable) -> target dict, or None
    represent: Callable     # (frozen, trainable, images uint8 [B,...]) -> [B, F]
    # `step`'s computation without the loops that only reorder it to save
    # memory (views in turn, rematerialised blocks as a `lax.scan`), same
    # arguments and results: what XLA's FLOP count is taken on
    # (`builders.step_cost`), because `cost_analysis()` counts a loop's body
    # once whatever its trip count (the views' loop halved the ViT-Tiny
    # step's count: 189.3 vs 378.5 GFLOPs). Recomputation under
    # `optim.remat` is therefore not counted. `step` itself when it has none.
    counted_step: Callable = None


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


def make_local_step(encoder: Backbone, method: SSLMethod, spec: StageSpec,
                    tx: optax.GradientTransformation,
                    augment_cfg: augment.AugmentConfig,
                    loss_terms: tuple = (), *, compute_dtype: str = 'float32',
                    remat: str = 'none', views_in_turn: bool = True) -> LocalStep:
    """Builds one client step for stage `spec` (see module docstring).

    Args:
      loss_terms: extra terms `term(TermInputs) -> (loss, metrics)` added to
        the SSL loss (the algorithm's; empty for plain FedAvg).
      compute_dtype: dtype of the step's forward / backward
        (`COMPUTE_DTYPES`, `optim.compute_dtype`); state stays float32.
      remat: rematerialisation of the trainable segment's blocks
        (`models.backbone.REMAT_POLICIES`, `optim.remat`).
      views_in_turn: for a method whose loss is given per view
        (`SSLMethod.splits_views`), differentiate one view after the other
        (`views.views_in_turn`, `optim.views_in_turn`); False differentiates
        `method.loss_fn` as one function (faster for tiny steps on CPU).

    Raises:
      ConfigError: unknown `compute_dtype` or `remat`.
    """
    local = _build_local_step(encoder, method, spec, tx, augment_cfg, loss_terms,
                              compute_dtype, remat, views_in_turn)
    if remat != 'none' or (views_in_turn and method.splits_views):   # loops
        return local._replace(counted_step=_build_local_step(
            encoder, method, spec, tx, augment_cfg, loss_terms, compute_dtype,
            remat='none', views_in_turn=False).step)
    return local._replace(counted_step=local.step)


def _build_local_step(encoder, method, spec, tx, augment_cfg, loss_terms, compute_dtype,
                      remat, views_in_turn) -> LocalStep:
    """`make_local_step`'s step, without `counted_step`."""
    copied = target_parts(spec, method)
    dtype = check_compute_dtype(compute_dtype)
    check_remat(remat)
    # Identity in float32, so that path is exactly the float32 engine.
    cast = (lambda tree: tree) if dtype == jnp.float32 else (
        lambda tree: cast_floats(tree, dtype))

    def make_encode(keep=None):
        def encode_fn(params, h):
            # Trainable segment on top of the frozen prefix, then the pooled
            # feature at the heads' width; `keep` skips some of its blocks
            # (depth dropout).
            out = encoder.run_segment(params, h, spec.frozen_blocks,
                                      spec.num_blocks, keep, remat=remat)
            return encoder.head_input(params, out, spec.num_blocks)
        return encode_fn

    encode_fn = make_encode()

    def prefix(frozen, view, keep=None):
        # Frozen blocks [0, frozen_blocks): identity when nothing is frozen;
        # `keep` skips some of them (depth dropout).
        return jax.lax.stop_gradient(
            encoder.run_segment(frozen, view, 0, spec.frozen_blocks, keep))

    def init_target(trainable):
        if not method.has_target:
            return None
        return select(trainable, copied)

    def init_opt(frozen, trainable):
        return tx.init({**frozen, **trainable})

    def represent(frozen, trainable, images):
        x = prefix(frozen, augment.to_float(images))
        return method.project_fn(trainable, encode_fn, x)

    def step(frozen, trainable, target, opt_state, images, key, anchor, context,
             momentum):
        v1, v2 = cast(augment.two_views(key, images, augment_cfg))
        keep = context.keep_blocks   # [num_blocks] or None
        if keep is None:
            keep_prefix, encode = None, encode_fn
        else:   # the frozen prefix's entries, then the trained segment's
            keep_prefix = keep[:spec.frozen_blocks]
            encode = make_encode(keep[spec.frozen_blocks:])
        frozen_c = cast(frozen)
        # Both views through the prefix as ONE batch [2B, ...]: run as two
        # calls, XLA:CPU kept both chains' activations alive at once (ViT-Tiny
        # last stage, batch 64: 398 MiB of temporaries vs 47 MiB stacked).
        # Exact: every prefix op is per example (no batch statistics).
        stacked = prefix(frozen_c, jnp.concatenate([v1, v2]), keep_prefix)
        views = stacked.reshape((2, -1) + stacked.shape[1:])    # [2, B, ...]
        h1, h2 = views[0], views[1]
        target_c = cast(target)

        def project_f32(params, h):
            return method.project_fn(params, encode, h).astype(jnp.float32)

        def add_terms(online, online_c, loss, metrics):
            # The algorithm's extra terms, each added to `loss`.
            inputs = TermInputs(
                online=online, anchor=anchor,
                project=lambda x: project_f32(
                    online_c, prefix(frozen_c, cast(x), keep_prefix)),
                context=context, key=jax.random.fold_in(key, 1),
                project_view=lambda p: project_f32(cast(p), h1))
            for term in loss_terms:
                term_loss, term_metrics = term(inputs)
                loss = loss + term_loss
                metrics = {**metrics, **term_metrics}
            return loss, metrics

        def loss_of(online):
            # Differentiated in float32: the cast's transpose brings the
            # compute-dtype gradients back to float32.
            online_c = cast(online)
            loss, metrics = method.loss_fn(online_c, target_c, encode, h1, h2,
                                           context.negatives)
            return add_terms(online, online_c, loss, metrics)

        if views_in_turn and method.splits_views:
            # One view's forward and backward after the other (`views.py`):
            # half the activation memory, the same numbers.
            terms = ((lambda online: add_terms(online, cast(online), 0.0, {}))
                     if loss_terms else None)
            loss, grads = views_lib.views_in_turn(method, trainable, target_c, encode,
                                                  views, context.negatives, cast, terms)
        else:
            (loss, _), grads = jax.value_and_grad(loss_of, has_aux=True)(trainable)
        params = {**frozen, **trainable}
        grads = {**jax.tree.map(jnp.zeros_like, frozen), **grads}
        updates, opt_state = tx.update(grads, opt_state, params)
        trainable = select(optax.apply_updates(params, updates), spec.trainable)
        if target is not None:
            target = ema_update(target, trainable, momentum)
        return trainable, target, opt_state, loss

    return LocalStep(step=step, init_opt=init_opt, init_target=init_target,
                     represent=represent)


def depth_dropout_keep(key: jax.Array, spec: StageSpec, rate: float) -> jax.Array:
    """`[num_blocks]` bool: the blocks a client runs this round.

    Each droppable block (`spec.droppable_blocks`) is dropped with
    probability `rate`, from the client's round key (so the accounting can
    redraw the same masks); the stage's new blocks are always kept.
    """
    dropped = spec.droppable_blocks
    draw = jax.random.uniform(jax.random.fold_in(key, DEPTH_DROPOUT_KEY), (dropped,))
    return jnp.concatenate([draw >= rate, jnp.ones(spec.num_blocks - dropped, bool)])


def num_local_steps(num_examples: int, batch_size: int, epochs: int) -> int:
    """Steps of a client holding `num_examples`: E * ceil(n / B)."""
    return epochs * math.ceil(num_examples / batch_size)


def represent_all(local: LocalStep, frozen, trainable, images, n, batch_size):
    """`[N_max, F]` representations of a client's rows, `[N_max]` validity.

    Batches of B real rows (wrapping, like training batches, so batch-stat
    BatchNorm in the heads never sees padding); each real row is written
    exactly once, padding rows stay zero.
    """
    n_max = images.shape[0]
    num_batches = -(-n_max // batch_size)

    def one(j):
        pos = j * batch_size + jnp.arange(batch_size)
        return local.represent(frozen, trainable, images[pos % n]), pos

    reps, pos = jax.lax.map(one, jnp.arange(num_batches))
    reps, pos = reps.reshape(-1, reps.shape[-1]), pos.reshape(-1)
    rows = jnp.where(pos < n, pos, n_max)          # out of bounds -> dropped
    out = jnp.zeros((n_max, reps.shape[-1]), reps.dtype).at[rows].set(
        reps, mode='drop')
    return out, jnp.arange(n_max) < n


def make_local_train(local: LocalStep, spec: StageSpec,
                     algorithm: FederatedAlgorithm, method: SSLMethod, *,
                     batch_size: int, epochs: int, max_examples: int,
                     total_rounds: int, depth_dropout: float = 0.0) -> Callable:
    """One client's local training for one round.

    With `depth_dropout` p > 0, each of the stage's droppable blocks (all
    present blocks but the new ones: `StageSpec.droppable_blocks`) is skipped
    for the whole round with probability p, drawn per client per round
    (`depth_dropout_keep`; paper Table 6 DD, spec §6). A skipped trained
    block (progressive mode) gets no gradient, and the round function
    neither counts its upload nor, in the accounting, its download.

    Returns `local_train(frozen, sent, state, images, num_examples, key,
    round_index, public)` -> `(upload, new_state, metrics)` where:
      frozen: present parts not exchanged (the frozen prefix), shared.
      sent: the round's `Sent` (exchanged parts + algorithm extras).
      state: this client's persistent state (the algorithm's pytree).
      images: `[N_max, H, W, 3]` uint8, the client's (padded) examples.
      num_examples: scalar int32 n_c <= N_max (rows past it are padding).
      key: the client's round key.
      round_index: global 0-based round (int32), for the momentum schedule:
        progress at local step k is (round_index + k / steps) / total_rounds.
      public: the server's `PublicData` (empty arrays when unused).
      upload: an `Upload` (exchanged parts after training + extras).
      metrics: {'loss': mean loss over the client's steps, 'steps': count}.
    """
    scan_steps = num_local_steps(max_examples, batch_size, epochs)

    def local_train(frozen, sent, state, images, num_examples, key, round_index,
                    public):
        perm_key, aug_key = jax.random.split(key)
        n = num_examples
        steps_per_epoch = (n + batch_size - 1) // batch_size
        steps = epochs * steps_per_epoch
        # [E, N_max]: per-epoch permutations of the n valid rows (padding
        # rows get key 2.0 > any uniform, so they sort last).
        valid_row = jnp.arange(max_examples) < n
        perms = jnp.argsort(jnp.where(
            valid_row, jax.random.uniform(perm_key, (epochs, max_examples)), 2.0),
            axis=-1)
        received = {**frozen, **sent.params}
        start = algorithm.client_init(
            sent, state, {p: received[p] for p in spec.trainable if p in received})
        trainable = select(start.online, spec.trainable)
        target = local.init_target(trainable) if start.target is None else start.target
        context = algorithm.client_context(sent, state, public)
        keep = depth_dropout_keep(key, spec, depth_dropout)
        if depth_dropout > 0 and spec.droppable_blocks > 0:
            context = context._replace(keep_blocks=keep)
        carry0 = (trainable, target, local.init_opt(frozen, trainable))

        def body(carry, k):
            epoch = jnp.minimum(k // steps_per_epoch, epochs - 1)
            pos = (k % steps_per_epoch) * batch_size + jnp.arange(batch_size)
            idx = perms[epoch][pos % n]
            progress = (round_index + k / steps) / total_rounds
            momentum = method.momentum_fn(progress) if method.has_target else 0.0

            def run(c):
                tr, tg, op, loss = local.step(
                    frozen, *c, images[idx], jax.random.fold_in(aug_key, k),
                    sent.params, context, momentum)
                return (tr, tg, op), loss.astype(jnp.float32)

            carry, loss = jax.lax.cond(
                k < steps, run, lambda c: (c, jnp.zeros((), jnp.float32)), carry)
            return carry, loss

        (trainable, target, _), losses = jax.lax.scan(body, carry0,
                                                      jnp.arange(scan_steps))
        result = ClientResult(
            sent=sent, state=state, start=start, online=trainable, target=target,
            represent=lambda: represent_all(local, frozen, trainable, images, n,
                                             batch_size))
        extras, new_state = algorithm.client_final(result)
        upload = Upload(select({**received, **trainable}, spec.exchanged), extras)
        return upload, new_state, {'loss': losses.sum() / steps, 'steps': steps,
                                   'keep': keep}

    return local_train
