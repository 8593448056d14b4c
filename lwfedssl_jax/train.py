"""The training loop: the only module that reads the root config.

    for stage in plan:                       # stages.py: e2e / layerwise / progressive
        server initialises the stage's new parts
        build the stage's jitted round function once
        for round in stage:
            sample clients -> round_fn(frozen, exchanged, ...) -> FedAvg
            log loss, bytes down/up per client
        evaluate (kNN + linear probe) at the stage end
    final evaluation (+ random-encoder baseline), summary.json

Outputs in `workdir`: `config.json`, `metrics.jsonl` (one line per round and
per evaluation), `summary.json`.
"""

import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from lwfedssl_jax import ssl, stages
from lwfedssl_jax.accounting.xla_cost import abstract, compiled_flops
from lwfedssl_jax.data import augment, sources
from lwfedssl_jax.data.federated import FederatedData, make_federated_data
from lwfedssl_jax.evaluation.monitor import evaluate_encoder
from lwfedssl_jax.federated import client as client_lib
from lwfedssl_jax.federated.round import make_round_fn
from lwfedssl_jax.federated.sampling import sample_clients
from lwfedssl_jax.models.vit import ViTConfig, ViTEncoder
from lwfedssl_jax.utils import rng
from lwfedssl_jax.utils.tree import num_bytes, num_params, select
from lwfedssl_jax.writers import RunWriter


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
    return StageFns(local, make_round_fn(clients_update))


def step_flops(fns: StageFns, params: dict, spec: stages.StageSpec,
               batch_size: int, image_size: int) -> float:
    """XLA FLOPs of ONE client step of this stage (compile-only)."""
    frozen = abstract(select(params, spec.frozen))
    trainable = abstract(select(params, spec.trainable))
    target = jax.eval_shape(fns.local.init_target, trainable)
    opt = jax.eval_shape(fns.local.init_opt, frozen, trainable)
    images = jax.ShapeDtypeStruct((batch_size, image_size, image_size, 3), jnp.uint8)
    return compiled_flops(fns.local.step, frozen, trainable, target, opt, images,
                          jax.random.key(0))


def _eval_kwargs(config) -> dict:
    e = config.eval
    return dict(batch_size=e.batch_size, knn_k=e.knn_k,
                knn_temperature=e.knn_temperature, probe_epochs=e.probe_epochs,
                probe_lr=e.probe_lr, probe_batch_size=e.probe_batch_size,
                probe_weight_decay=e.probe_weight_decay, seed=config.seed)


# ----------------------------------------------------------------- Run
def run(config: ml_collections.ConfigDict, workdir: str,
        on_stage_end=None) -> dict:
    """Trains according to `config`, writing outputs to `workdir`.

    Args:
      config: a config from `configs/` (locked ConfigDict).
      workdir: output directory (created if needed).
      on_stage_end: optional `fn(spec, params)` called after every stage with
        the server's parameters (hook for checkpoints and tests).

    Returns:
      The summary dict (also written to `workdir/summary.json`).
    """
    t_start = time.time()
    setup = build(config)
    writer = RunWriter(workdir)
    writer.write_json('config.json', config.to_dict())
    dataset, fed = load_data(config)
    print(f'[lwfedssl] {config.mode}: {len(setup.plan)} stage(s) x '
          f'{setup.plan[0].rounds} rounds, {fed.num_clients} clients '
          f'(sizes {int(fed.sizes.min())}-{int(fed.sizes.max())}), '
          f'data {config.data.source} {dataset.train_images.shape}', flush=True)

    params, stage_rows, evals = {}, [], []
    train_key = rng.stream(config.seed, rng.TRAIN)
    sample_key = rng.stream(config.seed, rng.SAMPLING)
    bytes_down = bytes_up = 0
    global_round = 0
    try:
        for spec in setup.plan:
            params = init_new_parts(setup, params, spec, config.seed)
            row, params, global_round, down, up = _run_stage(
                setup, spec, config, params, fed, train_key, sample_key,
                global_round, writer, dataset)
            bytes_down, bytes_up = bytes_down + down, bytes_up + up
            if on_stage_end is not None:
                on_stage_end(spec, params)
            stage_rows.append(row)
            if row.get('eval'):
                evals.append({'stage': spec.index, **row['eval']})
        final = evaluate_encoder(setup.encoder, params, setup.plan[-1].num_blocks,
                                 dataset, **_eval_kwargs(config))
        writer.log(kind='final_eval', **final)
        summary = {
            'mode': config.mode, 'final_eval': final,
            'stages': stage_rows, 'evals': evals,
            'bytes_down_per_client': bytes_down, 'bytes_up_per_client': bytes_up,
            'max_trained_params_per_round': max(r['trained_params'] for r in stage_rows),
            'max_exchanged_params_per_round': max(r['exchanged_params'] for r in stage_rows),
            'last_stage_step_flops': stage_rows[-1].get('step_flops'),
        }
        if config.eval.random_baseline:
            rand = setup.encoder.init(rng.stream(config.seed, rng.RANDOM_BASELINE))
            summary['random_encoder_eval'] = evaluate_encoder(
                setup.encoder, rand, setup.encoder.depth, dataset,
                **_eval_kwargs(config))
        summary['wall_time_s'] = time.time() - t_start
        writer.write_json('summary.json', summary)
    finally:
        writer.close()
    return {**summary, 'params': params}


def _run_stage(setup, spec, config, params, fed: FederatedData, train_key,
               sample_key, global_round, writer, dataset):
    """Runs all rounds of one stage; returns its summary row and new state."""
    fns = build_stage(setup, spec, config, fed.max_examples)
    frozen = select(params, spec.frozen)
    exchanged = select(params, spec.exchanged)
    row = {'stage': spec.index, 'num_blocks': spec.num_blocks,
           'rounds': spec.rounds,
           'trained_params': num_params(select(params, spec.trainable)),
           'exchanged_params': num_params(exchanged)}
    if config.log.step_flops == 'every_stage' or (
            config.log.step_flops == 'last_stage' and spec.index == len(setup.plan) - 1):
        row['step_flops'] = step_flops(fns, params, spec, config.fl.batch_size,
                                       config.model.image_size)
    down = up = 0
    bar = tqdm(range(spec.rounds), desc=f'stage {spec.index + 1}/{len(setup.plan)}',
               disable=not config.log.progress, leave=True, dynamic_ncols=True)
    for r in bar:
        t0 = time.time()
        selected = sample_clients(rng.fold(sample_key, spec.index, r),
                                  fed.num_clients, config.fl.clients_per_round)
        key = rng.fold(train_key, spec.index, r)
        exchanged, uploads, metrics = fns.round_fn(
            frozen, exchanged, fed.images, fed.sizes, selected, key)
        losses = np.asarray(metrics['loss'])
        if not np.isfinite(losses).all():
            bad = [int(c) for c, l in zip(np.asarray(selected), losses)
                   if not np.isfinite(l)]
            raise FloatingPointError(
                f'Non-finite loss at stage {spec.index}, round {r} (global '
                f'{global_round}), clients {bad}; lower optim.base_lr or check '
                'the data.')
        # Bytes counted on the pytrees that really travel this round.
        k = len(selected)
        round_down, round_up = num_bytes(exchanged), num_bytes(uploads) // k
        down, up = down + round_down, up + round_up
        weights = np.asarray(fed.sizes)[np.asarray(selected)]
        loss = float(np.average(losses, weights=weights))
        writer.log(kind='round', stage=spec.index, round=r,
                   global_round=global_round, loss=loss,
                   client_loss=losses, clients=selected,
                   bytes_down_per_client=round_down, bytes_up_per_client=round_up,
                   round_time_s=time.time() - t0)
        bar.set_postfix(loss=f'{loss:.4f}')
        global_round += 1
    params = {**params, **exchanged}
    row.update(bytes_down_per_client=down, bytes_up_per_client=up,
               round_fn_traces=fns.round_fn.num_traces)
    if config.eval.at_stage_end:
        row['eval'] = evaluate_encoder(setup.encoder, params, spec.num_blocks,
                                       dataset, **_eval_kwargs(config))
        writer.log(kind='stage_eval', stage=spec.index, **row['eval'])
        print(f'[lwfedssl] stage {spec.index + 1} eval: '
              + ', '.join(f'{k}={v:.2f}' for k, v in row['eval'].items()),
              flush=True)
    return row, params, global_round, down, up
