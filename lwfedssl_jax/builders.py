"""Builds a run's static pieces from its config: model, method, plan, data,
and each stage's compiled functions and per-stage resource figures.

Shared by the training loop (`train.py`) and the compile-only resource
report (`resources.py`), so both see exactly the same engine.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from lwfedssl_jax import sharding, ssl, stages
from lwfedssl_jax.accounting import comm, flops
from lwfedssl_jax.accounting.xla_cost import CompiledCost, abstract, compiled_cost
from lwfedssl_jax.data import augment, sources
from lwfedssl_jax.data.federated import make_federated_data
from lwfedssl_jax.federated import client as client_lib
from lwfedssl_jax.federated.round import make_round_fn
from lwfedssl_jax.models.vit import ViTConfig, ViTEncoder
from lwfedssl_jax.utils import rng
from lwfedssl_jax.utils.tree import num_params, select

STEP_FLOPS_CHOICES = ('every_stage', 'last_stage', 'none')


class Setup(NamedTuple):
    """Everything static that a run is built from."""
    encoder: ViTEncoder
    method: ssl.SSLMethod
    plan: tuple
    augment_cfg: augment.AugmentConfig
    learning_rate: float


class StageFns(NamedTuple):
    """The compiled pieces of one stage."""
    local: client_lib.LocalStep
    round_fn: object


# ---------------------------------------------------------------- Setup
def build(config: ml_collections.ConfigDict) -> Setup:
    """Validates the config and builds model, method, plan and augmentation."""
    fl = config.fl
    if fl.batch_size < 2:
        raise ValueError(f'fl.batch_size={fl.batch_size}: contrastive losses need '
                         'at least 2 examples per batch.')
    if fl.local_epochs < 1:
        raise ValueError(f'fl.local_epochs must be >= 1, got {fl.local_epochs}.')
    if not 1 <= fl.clients_per_round <= fl.num_clients:
        raise ValueError(f'fl.clients_per_round={fl.clients_per_round} must be in '
                         f'[1, fl.num_clients={fl.num_clients}].')
    if config.log.step_flops not in STEP_FLOPS_CHOICES:
        raise ValueError(f'log.step_flops={config.log.step_flops!r}; choices: '
                         f'{STEP_FLOPS_CHOICES}.')
    encoder = ViTEncoder(ViTConfig(**config.model))
    method = ssl.get(config.ssl.name)(**config.ssl.kwargs)
    plan = stages.make_stage_plan(
        config.mode, depth=encoder.depth, blocks_per_stage=config.blocks_per_stage,
        total_rounds=fl.total_rounds, head_names=method.head_names)
    try:
        augment_cfg = augment.AugmentConfig(**config.augment)
    except TypeError as e:
        raise ValueError(f'Bad config.augment: {e}; valid keys: '
                         f'{augment.AugmentConfig._fields}.') from None
    lr = config.optim.base_lr * fl.batch_size / 256
    return Setup(encoder, method, plan, augment_cfg, lr)


def load_data(config: ml_collections.ConfigDict):
    """The labeled dataset (for evaluation) and its federated training split."""
    d = config.data
    dataset = sources.load_dataset(
        d.source, image_size=config.model.image_size, data_dir=d.data_dir,
        download=d.download, cache_dir=d.cache_dir,
        synthetic_sizes=(d.synthetic_train, d.synthetic_test), seed=config.seed)
    fed = make_federated_data(
        dataset.train_images, dataset.train_labels,
        num_clients=config.fl.num_clients, kind=d.partition,
        alpha=d.dirichlet_alpha, seed=d.partition_seed)
    return dataset, fed


def init_new_parts(setup: Setup, params: dict, spec: stages.StageSpec,
                   seed: int) -> dict:
    """Server-side init of the stage's new parts (same for every client).

    Part `name` always uses the same key (`fold_in(init stream, index)`), so a
    block starts from the same weights whatever the mode: e2e, layerwise and
    progressive runs of one seed share their initialisation.
    """
    key = rng.stream(seed, rng.MODEL_INIT)
    names = setup.encoder.part_names()
    params = dict(params)
    for i, name in enumerate(names):
        if name in spec.new:
            params[name] = setup.encoder.init_part(jax.random.fold_in(key, i), name)
    new_heads = [h for h in setup.method.head_names if h in spec.new]
    if new_heads:
        heads = setup.method.init_heads(jax.random.fold_in(key, len(names)),
                                        setup.encoder.cfg.width)
        params.update({h: heads[h] for h in new_heads})
    return params


def build_stage(setup: Setup, spec: stages.StageSpec, config, max_examples: int):
    """Client step, local training and the jitted round function of a stage."""
    fl, o = config.fl, config.optim
    tx = client_lib.make_client_optimizer(
        spec, learning_rate=setup.learning_rate, weight_decay=o.weight_decay,
        b1=o.b1, b2=o.b2)
    local = client_lib.make_local_step(setup.encoder, setup.method, spec, tx,
                                       setup.augment_cfg)
    local_train = client_lib.make_local_train(
        local, spec, batch_size=fl.batch_size, epochs=fl.local_epochs,
        max_examples=max_examples)
    clients_update = client_lib.make_clients_update(
        local_train, fl.client_execution, fl.client_chunk)
    mesh = sharding.make_client_mesh(fl.mesh_devices)
    if mesh is not None and fl.clients_per_round % mesh.size:
        raise ValueError(f'fl.clients_per_round={fl.clients_per_round} must be a '
                         f'multiple of the {mesh.size} mesh devices (fl.mesh_devices).')
    return StageFns(local, make_round_fn(clients_update, mesh))


def step_cost(fns: StageFns, params: dict, spec: stages.StageSpec,
              batch_size: int, image_size: int) -> CompiledCost:
    """XLA FLOPs and memory of ONE client step of this stage (compile-only).

    `params` may hold arrays or ShapeDtypeStructs.
    """
    frozen = abstract(select(params, spec.frozen))
    trainable = abstract(select(params, spec.trainable))
    target = jax.eval_shape(fns.local.init_target, trainable)
    opt = jax.eval_shape(fns.local.init_opt, frozen, trainable)
    images = jax.ShapeDtypeStruct((batch_size, image_size, image_size, 3), jnp.uint8)
    return compiled_cost(fns.local.step, frozen, trainable, target, opt, images,
                         jax.random.key(0))


def stage_resources(setup: Setup, spec: stages.StageSpec, previous_spec,
                    params: dict, fns: StageFns, config) -> dict:
    """Static per-stage resource figures (compile-only where measured).

    Returns a dict with: trained/exchanged parameter counts, the paper-
    convention FLOPs of one client per round (E local epochs of one sample),
    the stage-end broadcast bytes, and, if `config.log.step_flops` selects
    this stage, XLA's FLOPs and memory of one client step.
    """
    heads = {h: params[h] for h in setup.method.head_names}
    row = {
        'stage': spec.index, 'num_blocks': spec.num_blocks, 'rounds': spec.rounds,
        'trained_params': num_params(select(params, spec.trainable)),
        'exchanged_params': num_params(select(params, spec.exchanged)),
        'paper_flops_per_round': config.fl.local_epochs * flops.per_sample_epoch_macs(
            setup.encoder, spec, heads, setup.method.samples_per_step),
        'stage_end_broadcast_bytes': comm.newly_frozen_bytes(previous_spec, spec, params),
    }
    last = spec.index == len(setup.plan) - 1
    if config.log.step_flops == 'every_stage' or (
            config.log.step_flops == 'last_stage' and last):
        cost = step_cost(fns, params, spec, config.fl.batch_size,
                         config.model.image_size)
        row.update(step_flops=cost.flops, step_memory_bytes=cost.memory_bytes)
    return row
