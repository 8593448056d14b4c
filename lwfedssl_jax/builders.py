"""Builds a run's static pieces from its config: model, method, plan, data,
and each stage's compiled functions and per-stage resource figures.

Shared by the training loop (`train.py`) and the compile-only resource
report (`resources.py`), so both see exactly the same engine.
"""

import inspect
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lwfedssl_jax import sharding, ssl, stages
from lwfedssl_jax.accounting import comm, flops
from lwfedssl_jax.accounting.xla_cost import (CompiledCost, abstract, compiled_cost,
                                              memory_bytes)
from lwfedssl_jax.data import augment, sources
from lwfedssl_jax.data.federated import make_federated_data
from lwfedssl_jax.errors import ConfigError, did_you_mean
from lwfedssl_jax.federated import addons, aggregate, algorithms
from lwfedssl_jax.federated import client as client_lib, execution
from lwfedssl_jax.federated.algorithms.base import PublicData
from lwfedssl_jax.federated import round as round_lib
from lwfedssl_jax.federated.round import RoundFunction, RoundState, make_round_fn
from lwfedssl_jax.models import Backbone, make_backbone
from lwfedssl_jax.utils import rng
from lwfedssl_jax.utils.tree import num_bytes, num_params, select

STEP_FLOPS_CHOICES = ('every_stage', 'last_stage', 'none')


class Setup(NamedTuple):
    """Everything static that a run is built from.

    Attributes:
      make_algorithm: `(spec, num_clients, max_examples) ->
        FederatedAlgorithm`, the configured algorithm for one stage.
      aggregator: how the server combines the uploaded parameters.
      server_update: the server optimiser applied to the aggregate.
      rep_dim: width F of the method's representation (projector output).
      uses_public_data: the algorithm needs the server's public set.
    """
    encoder: Backbone
    method: ssl.SSLMethod
    plan: tuple
    augment_cfg: augment.AugmentConfig
    learning_rate: float
    make_algorithm: Callable
    aggregator: aggregate.Aggregator
    server_update: aggregate.ServerUpdate
    rep_dim: int
    uses_public_data: bool


class StageFns(NamedTuple):
    """The compiled pieces of one stage.

    Attributes:
      client_chunk: what `fl.client_execution='auto'` chose for this stage
        (`resolve_client_chunk`); None otherwise.
    """
    local: client_lib.LocalStep
    algorithm: algorithms.FederatedAlgorithm
    round_fn: RoundFunction
    client_chunk: execution.ChunkChoice | None = None


def _kwargs_for(builder, kwargs: dict, key: str, choice: str) -> dict:
    """`kwargs` after checking every key is an argument of `builder`."""
    accepted = [n for n, p in inspect.signature(builder).parameters.items()
                if p.kind == p.KEYWORD_ONLY and n not in algorithms.ENGINE_ARGS]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(
            f'{key}.{unknown[0]}', kwargs[unknown[0]], f'{choice} does not take '
            f'{unknown}; it accepts {accepted}.' + did_you_mean(unknown[0], accepted),
            f'pick the method with the config variant (e.g. configs/quickstart.py:'
            f'method={choice}), which sets its own defaults.')
    return dict(kwargs)


# ---------------------------------------------------------------- Setup
def build(config: ml_collections.ConfigDict) -> Setup:
    """Builds model, method, plan, augmentation, algorithm and server pieces.

    Each piece checks its own keyword arguments (raising `ConfigError`); the
    rest of the config is checked by `validation.check_config`, which calls
    this function once without data.
    """
    fl = config.fl
    encoder = make_backbone(config.model.to_dict())
    make_method = ssl.get(config.ssl.name)
    method = make_method(**_kwargs_for(make_method, config.ssl.kwargs.to_dict(),
                                       'ssl.kwargs', config.ssl.name))
    plan = stages.make_stage_plan(
        config.mode, backbone=encoder, blocks_per_stage=config.blocks_per_stage,
        total_rounds=fl.total_rounds, head_names=method.head_names,
        local_parts=tuple(fl.local_parts))
    augment_cfg = augment.validate_config(augment.AugmentConfig(**config.augment))
    lr = config.optim.base_lr * fl.batch_size / 256
    make_algo = algorithms.get(fl.algorithm)
    algo_kwargs = _kwargs_for(
        make_algo, config.algorithms[fl.algorithm].to_dict()
        if fl.algorithm in config.algorithms else {},
        f'algorithms.{fl.algorithm}', fl.algorithm)

    rep = _rep_dim(method, encoder.head_width)

    addon_kwargs = {name: _kwargs_for(addons.ADDONS[name], config.addons[name].to_dict()
                                      if name in config.addons else {},
                                      f'addons.{name}', name)
                    for name in fl.addons if name in addons.ADDONS}

    def make_algorithm(spec, num_clients, max_examples):
        algorithm = make_algo(spec=spec, method=method, num_clients=num_clients,
                              max_examples=max_examples, rep_dim=rep, **algo_kwargs)
        return addons.with_addons(algorithm, addons.make_addons(fl.addons, spec,
                                                                addon_kwargs))

    # Built once now so that misuse (method, kwargs) fails before any work.
    uses_public = make_algorithm(plan[0], fl.num_clients, fl.batch_size).uses_public_data
    if uses_public and config.data.public_size < 1:
        raise ConfigError('data.public_size', config.data.public_size,
                          f'fl.algorithm={fl.algorithm} needs a public set on the server.',
                          'set --config.data.public_size=1000 (images held out of the '
                          'training split).')
    s = config.server
    agg = aggregate.make_aggregator(
        s.aggregator, **(config.aggregators[s.aggregator].to_dict()
                         if s.aggregator in config.aggregators else {}))
    server_update = aggregate.make_server_update(
        s.optimizer, learning_rate=s.learning_rate, momentum=s.momentum, b1=s.b1,
        b2=s.b2, eps=s.eps)
    return Setup(encoder, method, plan, augment_cfg, lr, make_algorithm, agg,
                 server_update, rep, uses_public)


def load_source(config: ml_collections.ConfigDict, source: str):
    """Source `source` (data.source syntax) at `model.image_size`, read with
    the run's `data.*` settings: the pre-training data and every evaluation
    dataset are loaded by this one call."""
    d = config.data
    return sources.load_dataset(
        source, image_size=config.model.image_size, data_dir=d.data_dir,
        download=d.download, cache_dir=d.cache_dir,
        synthetic_sizes=(d.synthetic_train, d.synthetic_test), seed=config.seed)


def load_data(config: ml_collections.ConfigDict):
    """The pre-training dataset (labelled or not: `ImageDataset.labelled`),
    its federated training split and the server's public set (see
    `public_set.py`). An unlabelled source is split as if all its images
    had label 0 (`data.partition` must then be 'uniform').

    The public set (`data.public_size` training images, 0 = none) is drawn
    with its own seed from the training split and removed from it before
    partitioning, so it is disjoint from every client's data.

    Returns:
      `(dataset, fed, public_images)`; `public_images` is `[P, H, W, 3]`
      uint8 (P may be 0).
    """
    d = config.data
    dataset = load_source(config, d.source)
    check_labels_available(config, dataset)
    images, labels = dataset.train_images, dataset.train_labels
    if labels is None:   # pre-training only: no class to partition by
        labels = np.zeros(len(images), np.int32)
    if not 0 <= d.public_size < len(images) - config.fl.num_clients:
        raise ConfigError('data.public_size', d.public_size, f'must be in [0, '
                          f'{len(images) - config.fl.num_clients}) for {len(images)} '
                          f'training images and {config.fl.num_clients} clients.')
    order = np.random.default_rng([d.partition_seed, 1]).permutation(len(images))
    public, rest = order[:d.public_size], np.sort(order[d.public_size:])
    fed = make_federated_data(
        images[rest], labels[rest], num_clients=config.fl.num_clients,
        kind=d.partition, alpha=d.dirichlet_alpha, seed=d.partition_seed)
    return dataset, fed, images[np.sort(public)]


def check_labels_available(config: ml_collections.ConfigDict, dataset) -> None:
    """`sources.check_unlabelled_use` for a pre-training dataset found to
    have no labels once read (a tfds dataset without a `label` feature)."""
    if not dataset.labelled:
        sources.check_unlabelled_use(config.data.source, config.data.partition,
                                     tuple(config.eval.datasets))


def _rep_dim(method: ssl.SSLMethod, width: int) -> int:
    """Width F of the method's representation (projector output)."""
    heads = jax.eval_shape(lambda k: method.init_heads(k, width), jax.random.key(0))
    return jax.eval_shape(lambda h: method.project_fn(
        h, lambda p, x: x, jnp.zeros((2, width))), heads).shape[-1]


def init_new_parts(setup: Setup, params: dict, spec: stages.StageSpec,
                   seed: int, tag: int = rng.MODEL_INIT) -> dict:
    """Server-side init of the stage's new parts (same for every client);
    returns the stage's present parts (a part that left the plan, such as
    an earlier stage's adapter, is dropped).

    Part `name` always uses the same key (`fold_in(init stream, index)`), so a
    block starts from the same weights whatever the mode: e2e, layerwise and
    progressive runs of one seed share their initialisation. `tag` selects
    the random stream (another one for the server's public base model).
    """
    key = rng.stream(seed, tag)
    names = setup.encoder.part_names()
    params = dict(params)
    for i, name in enumerate(names):
        if name in spec.new:
            params[name] = setup.encoder.init_part(jax.random.fold_in(key, i), name)
    new_heads = [h for h in setup.method.head_names if h in spec.new]
    if new_heads:
        heads = setup.method.init_heads(jax.random.fold_in(key, len(names)),
                                        setup.encoder.head_width)
        params.update({h: heads[h] for h in new_heads})
    return select(params, spec.present)


def build_stage(setup: Setup, spec: stages.StageSpec, config, num_clients: int,
                max_examples: int, chunk: int | None = None) -> StageFns:
    """Client step, local training and the jitted round function of a stage.

    `chunk` (clients vmapped together; 1 = `lax.map`, >= K = `vmap`)
    overrides `fl.client_execution`; `resolve_client_chunk` passes it for
    'auto'. Without it, an 'auto' stage's round runs its clients as 'map'
    (its shapes do not depend on the chunk).
    """
    fl, o = config.fl, config.optim
    algorithm = setup.make_algorithm(spec, num_clients, max_examples)
    tx = client_lib.make_client_optimizer(
        spec, learning_rate=setup.learning_rate, weight_decay=o.weight_decay,
        b1=o.b1, b2=o.b2)
    local = client_lib.make_local_step(setup.encoder, setup.method, spec, tx,
                                       setup.augment_cfg, algorithm.loss_terms,
                                       compute_dtype=o.compute_dtype, remat=o.remat,
                                       views_in_turn=o.views_in_turn)
    local_train = client_lib.make_local_train(
        local, spec, algorithm, setup.method, batch_size=fl.batch_size,
        epochs=fl.local_epochs, max_examples=max_examples,
        total_rounds=fl.total_rounds, depth_dropout=fl.depth_dropout)
    how = ((fl.client_execution, fl.client_chunk) if chunk is None
           else execution.for_chunk(chunk, fl.clients_per_round))
    clients_update = execution.make_clients_update(local_train, *how)
    mesh = sharding.make_client_mesh(fl.mesh_devices)
    return StageFns(local, algorithm, make_round_fn(
        clients_update, algorithm, setup.aggregator, setup.server_update, mesh,
        dropout_blocks=spec.block_parts if fl.depth_dropout > 0 and spec.droppable_blocks
        else ()))


def resolve_client_chunk(setup: Setup, spec: stages.StageSpec, config, fns: StageFns,
                         frozen: dict, state: RoundState, images, sizes,
                         public: PublicData, platform: str | None = None) -> StageFns:
    """`fns` with `fl.client_execution='auto'` resolved to a chunk (else `fns`).

    Compiles this stage's round function with its real arguments for a few
    chunks (`execution.choose_chunk`: 1, 2, then the candidate) and returns
    the stage built for the chosen one; its round function is the compiled,
    verified candidate, so the run does not compile it again. Logs one line.

    On CPU, 'auto' runs the clients one after another (chunk 1, `lax.map`)
    once one client is checked against the budget: XLA already spreads each
    operation over all cores, so vmapping clients adds no parallelism, only a
    working set C times larger; sequential `lax.map` was the fastest and
    smallest in every CPU measurement (environment-notes section 4: ViT-Tiny
    5.8-7.6 s vs vmap 9.3-11.0 s at 4.3 vs 8.0 GB).

    Args:
      frozen, state, images, sizes, public: the round function's arguments
        (arrays or ShapeDtypeStructs): frozen parts, `RoundState`,
        `[N, N_max, H, W, 3]` uint8 images, `[N]` sizes, the public set.
      platform: whose policy to apply (default `jax.default_backend()`;
        tests pass 'gpu' to exercise the search on CPU).

    Raises:
      ConfigError: the budget (`fl.memory_budget_gib`) is too small for one
        client's round.
    """
    fl = config.fl
    if fl.client_execution != 'auto':
        return fns
    platform = platform or jax.default_backend()
    num_clients, max_examples = images.shape[0], images.shape[1]
    k = fl.clients_per_round
    key = jax.eval_shape(lambda: rng.fold(rng.stream(0, rng.TRAIN), 0, 0))
    scalar = jax.ShapeDtypeStruct((), jnp.int32)
    args = (frozen, state, images, sizes, jax.ShapeDtypeStruct((k,), jnp.int32),
            jax.ShapeDtypeStruct((k,), jnp.bool_), scalar, scalar, key, public)
    candidates = {}

    def memory_of(chunk):
        candidates[chunk] = build_stage(setup, spec, config, num_clients, max_examples,
                                        chunk)
        return memory_bytes(candidates[chunk].round_fn.jitted.lower(*args).compile())

    budget, source = execution.memory_budget(fl.memory_budget_gib)
    choice = execution.choose_chunk(memory_of, k, budget, source, fl.memory_budget_gib,
                                    sequential=platform == 'cpu')
    how = execution.for_chunk(choice.chunk, k)
    print(f'[lwfedssl] stage {spec.index + 1}: client chunk {choice.chunk} of {k} '
          f'({how[0]}; fl.client_execution=auto), estimated {choice.estimated_bytes / 2**30:.3f}'
          f' GiB of budget {budget / 2**30:.3f} GiB ({source}); compiled chunks '
          f'{sorted(choice.measured)}', flush=True)
    return candidates[choice.chunk]._replace(client_chunk=choice)


def init_round_state(setup: Setup, fns: StageFns, spec: stages.StageSpec,
                     params: dict, num_clients: int) -> RoundState:
    """The round state at the start of a stage (`params`: present parts)."""
    return round_lib.init_round_state(fns.algorithm, setup.server_update, params,
                                      spec.exchanged, num_clients)


def step_cost(fns: StageFns, params: dict, state, public: PublicData,
              spec: stages.StageSpec, batch_size: int, image_size: int,
              keep_blocks: tuple | None = None) -> CompiledCost:
    """XLA FLOPs and memory of ONE client step of this stage (compile-only).

    `params` and `state` (the stage's `RoundState`) may hold arrays or
    ShapeDtypeStructs. `keep_blocks`, a tuple of `num_blocks` Python bools,
    compiles the step with those blocks skipped at trace time (depth
    dropout's saving; XLA counts a `lax.cond` at its costlier branch).
    The memory is the step's; the FLOPs are its loop-free twin's
    (`LocalStep.counted_step`), as XLA counts a loop's body once.
    """
    frozen = abstract(select(params, spec.frozen))
    trainable = abstract(select(params, spec.trainable))
    target = jax.eval_shape(fns.local.init_target, trainable)
    opt = jax.eval_shape(fns.local.init_opt, frozen, trainable)
    images = jax.ShapeDtypeStruct((batch_size, image_size, image_size, 3), jnp.uint8)
    sent = jax.eval_shape(fns.round_fn.sent, state.server)
    one_client = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype),
                              abstract(state.clients))
    context = jax.eval_shape(fns.algorithm.client_context, sent, one_client,
                             abstract(public))
    def with_keep(local_step):
        def step(*args):
            if keep_blocks is None:
                return local_step(*args)
            *head, ctx, momentum = args
            return local_step(*head, ctx._replace(keep_blocks=keep_blocks), momentum)
        return step

    args = (frozen, trainable, target, opt, images, jax.random.key(0), sent.params, context,
            jnp.float32(0.99))
    cost = compiled_cost(with_keep(fns.local.step), *args)
    if fns.local.counted_step is fns.local.step:
        return cost
    # FLOPs of the loop-free twin (`LocalStep.counted_step`): XLA counts a
    # loop's body once; the memory is the real step's.
    return cost._replace(flops=compiled_cost(with_keep(fns.local.counted_step), *args).flops)


def stage_resources(setup: Setup, spec: stages.StageSpec, previous_spec,
                    params: dict, state: RoundState, public: PublicData,
                    fns: StageFns, config) -> dict:
    """Static per-stage resource figures (compile-only where measured).

    Returns a dict with: trained/exchanged parameter counts, the paper-
    convention FLOPs of one client per round (E local epochs of one sample,
    plus the algorithm's extra representation passes), the stage-end
    broadcast bytes, the bytes of one client's persistent state and of the
    server's state beside the parameters, and, if `config.log.step_flops`
    selects this stage, XLA's FLOPs and memory of one client step; in the
    first stage, the one-off download of the server's public set.
    `params`, `state` and `public` may hold arrays or ShapeDtypeStructs.
    """
    heads = {h: params[h] for h in setup.method.head_names}
    dropout = config.fl.depth_dropout
    per_epoch = flops.per_sample_epoch_macs(setup.encoder, spec, heads,
                                            setup.method.samples_per_step, dropout)
    # The representation pass: present encoder + projector (the first head).
    projector = setup.method.head_names[0]
    represent = flops.forward_macs(
        setup.encoder, [p for p in spec.present if p not in heads],
        {projector: heads[projector]})
    # An add-on's extra models (RA) on the shared prefix: trainable encoder
    # parts + projector.
    segment = flops.forward_macs(
        setup.encoder, [p for p in spec.trainable if p not in heads],
        {projector: heads[projector]})
    row = {
        'stage': spec.index, 'num_blocks': spec.num_blocks, 'rounds': spec.rounds,
        'trained_params': num_params(select(params, spec.trainable)),
        'exchanged_params': num_params(select(params, spec.exchanged)),
        'paper_flops_per_round': config.fl.local_epochs * (
            per_epoch + fns.algorithm.paper_segment_forwards * segment)
        + fns.algorithm.paper_forwards_per_round * represent,
        'stage_end_broadcast_bytes': comm.newly_frozen_bytes(previous_spec, spec, params),
        'client_state_bytes': num_bytes(jax.eval_shape(fns.algorithm.init_client, params)),
        'server_state_bytes': num_bytes((state.server.opt_state, state.server.extras)),
        'public_data_bytes': num_bytes(public) if spec.index == 0 else 0,
    }
    if fns.client_chunk is not None:   # fl.client_execution='auto'
        row.update(client_chunk=fns.client_chunk.chunk,
                   client_chunk_bytes=fns.client_chunk.estimated_bytes,
                   memory_budget_bytes=fns.client_chunk.budget_bytes)
    last = spec.index == len(setup.plan) - 1
    if config.log.step_flops == 'every_stage' or (
            config.log.step_flops == 'last_stage' and last):
        cost = step_cost(fns, params, state, public, spec, config.fl.batch_size,
                         config.model.image_size)
        row.update(step_flops=cost.flops, step_memory_bytes=cost.memory_bytes)
        if dropout and spec.droppable_blocks:
            # XLA counts a `lax.cond` at its costlier branch, so the step's
            # count is that of no block dropped. Every droppable block costs
            # the same: the saving of one is measured by compiling the step
            # with block 0 skipped; the expected count drops p x that per
            # droppable block.
            one_dropped = (False,) + (True,) * (spec.num_blocks - 1)
            saving = cost.flops - step_cost(
                fns, params, state, public, spec, config.fl.batch_size,
                config.model.image_size, one_dropped).flops
            row.update(step_flops_no_dropout=cost.flops, block_dropout_saving_flops=saving,
                       step_flops=cost.flops - dropout * spec.droppable_blocks * saving)
    return row
