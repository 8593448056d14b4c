"""The training loop: the only module that reads the root config.

    for stage in plan:                       # stages.py: e2e / layerwise / progressive
        server initialises the stage's new parts
        build the stage's jitted round function once (builders.py)
        for round in stage:
            sample clients -> round_fn(frozen, exchanged, ...) -> FedAvg
            log loss and cumulative resources (bytes down/up, FLOPs)
        evaluate (kNN + linear probe) at the stage end
    final evaluation (+ random-encoder baseline), summary.json

Outputs in `workdir`: `config.json`, `metrics.jsonl` (one line per round and
per evaluation), `summary.json`.
"""

import time

import jax
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from lwfedssl_jax import builders
from lwfedssl_jax.accounting.tally import ResourceTally
from lwfedssl_jax.data.federated import FederatedData
from lwfedssl_jax.evaluation.monitor import evaluate_encoder
from lwfedssl_jax.federated.sampling import sample_clients
from lwfedssl_jax.utils import rng
from lwfedssl_jax.utils.tree import select
from lwfedssl_jax.writers import RunWriter


def _eval_kwargs(config) -> dict:
    e = config.eval
    return dict(batch_size=e.batch_size, knn_k=e.knn_k,
                knn_temperature=e.knn_temperature, probe_epochs=e.probe_epochs,
                probe_lr=e.probe_lr, probe_batch_size=e.probe_batch_size,
                probe_weight_decay=e.probe_weight_decay, seed=config.seed)


def round_clients(config, stage: int, round_index: int, num_clients: int):
    """Participating client ids `[K]` of a round (deterministic from the seed)."""
    return sample_clients(rng.fold(rng.stream(config.seed, rng.SAMPLING), stage,
                                   round_index),
                          num_clients, config.fl.clients_per_round)


def run(config: ml_collections.ConfigDict, workdir: str,
        on_stage_end=None) -> dict:
    """Trains according to `config`, writing outputs to `workdir`.

    Args:
      config: a config from `configs/` (locked ConfigDict).
      workdir: output directory (created if needed).
      on_stage_end: optional `fn(spec, params)` called after every stage with
        the server's parameters (hook for checkpoints and tests).

    Returns:
      The summary dict (also written to `workdir/summary.json`) plus the
      final server parameters under 'params'.
    """
    t_start = time.time()
    setup = builders.build(config)
    writer = RunWriter(workdir)
    writer.write_json('config.json', config.to_dict())
    dataset, fed = builders.load_data(config)
    print(f'[lwfedssl] {config.mode}: {len(setup.plan)} stage(s) x '
          f'{setup.plan[0].rounds} rounds, {fed.num_clients} clients '
          f'(sizes {int(fed.sizes.min())}-{int(fed.sizes.max())}), '
          f'data {config.data.source} {dataset.train_images.shape}', flush=True)

    params, stage_rows, tally = {}, [], ResourceTally()
    global_round, previous = 0, None
    try:
        for spec in setup.plan:
            params = builders.init_new_parts(setup, params, spec, config.seed)
            row, params, global_round = _run_stage(
                setup, spec, previous, config, params, fed, global_round, writer,
                dataset, tally)
            stage_rows.append(row)
            previous = spec
            if on_stage_end is not None:
                on_stage_end(spec, params)
        final = evaluate_encoder(setup.encoder, params, setup.plan[-1].num_blocks,
                                 dataset, **_eval_kwargs(config))
        writer.log(kind='final_eval', **final)
        summary = {
            'mode': config.mode, 'final_eval': final, 'stages': stage_rows,
            'evals': [{'stage': r['stage'], **r['eval']} for r in stage_rows
                      if 'eval' in r],
            'resources': tally.summary(),
            'max_trained_params_per_round': max(r['trained_params'] for r in stage_rows),
            'max_exchanged_params_per_round': max(r['exchanged_params'] for r in stage_rows),
            'last_stage_step_flops': stage_rows[-1].get('step_flops'),
            'max_step_memory_bytes': max((r['step_memory_bytes'] for r in stage_rows
                                          if 'step_memory_bytes' in r), default=None),
        }
        if config.eval.random_baseline:
            rand = setup.encoder.init(rng.stream(config.seed, rng.RANDOM_BASELINE))
            summary['random_encoder_eval'] = evaluate_encoder(
                setup.encoder, rand, setup.encoder.depth, dataset,
                **_eval_kwargs(config))
        summary['wall_time_s'] = time.time() - t_start
        writer.write_json('summary.json', summary)
        print(format_resources(summary), flush=True)
    finally:
        writer.close()
    return {**summary, 'params': params}


def format_resources(summary: dict) -> str:
    """The run's resource rows, in the paper's units."""
    r = summary['resources']
    mem = summary.get('max_step_memory_bytes')
    lines = [
        f'[lwfedssl] resources per client ({summary["mode"]}):',
        f'  communication  {r["comm_paper_gb"]:.4f} "GB" (bytes/2^20/1000; down '
        f'{r["bytes_down"]:,} B + up {r["bytes_up"]:,} B); worst-case download '
        f'{r["comm_worst_case_paper_gb"]:.4f} "GB"',
        f'  GFLOPs         {r["paper_gflops"]:.2f} (paper convention)'
        + ('' if r['xla_gflops'] is None else f', {r["xla_gflops"]:.2f} (XLA, real steps)'),
    ]
    if mem is not None:
        lines.append(f'  peak step memory {mem / 2**30:.3f} GiB (XLA memory_analysis)')
    return '\n'.join(lines)


def _run_stage(setup, spec, previous, config, params, fed: FederatedData,
               global_round, writer, dataset, tally: ResourceTally):
    """Runs all rounds of one stage; returns its summary row and new state."""
    fns = builders.build_stage(setup, spec, config, fed.max_examples)
    frozen = select(params, spec.frozen)
    exchanged = select(params, spec.exchanged)
    row = builders.stage_resources(setup, spec, previous, params, fns, config)
    tally.add_stage(row)
    sizes = np.asarray(fed.sizes)
    bar = tqdm(range(spec.rounds), desc=f'stage {spec.index + 1}/{len(setup.plan)}',
               disable=not config.log.progress, leave=True, dynamic_ncols=True)
    for r in bar:
        t0 = time.time()
        selected = round_clients(config, spec.index, r, fed.num_clients)
        key = rng.fold(rng.stream(config.seed, rng.TRAIN), spec.index, r)
        sent = exchanged
        exchanged, uploads, metrics = fns.round_fn(
            frozen, sent, fed.images, fed.sizes, selected, key)
        losses, steps = np.asarray(metrics['loss']), np.asarray(metrics['steps'])
        ids = np.asarray(selected)
        if not np.isfinite(losses).all():
            raise FloatingPointError(
                f'Non-finite loss at stage {spec.index}, round {r} (global '
                f'{global_round}), clients {ids[~np.isfinite(losses)].tolist()}; '
                'lower optim.base_lr or check the data.')
        # Resources counted on the pytrees that really travelled this round.
        one_upload = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), uploads)
        used = tally.add_round(frozen, sent, one_upload, row, steps)
        loss = float(np.average(losses, weights=sizes[ids]))
        writer.log(kind='round', stage=spec.index, round=r,
                   global_round=global_round, loss=loss, client_loss=losses,
                   clients=ids, client_steps=steps, round_time_s=time.time() - t0,
                   **{f'{k}_per_client': v for k, v in used.items()},
                   cumulative=tally.summary())
        bar.set_postfix(loss=f'{loss:.4f}')
        global_round += 1
    if jax.devices()[0].memory_stats():
        # Accelerators only (None on CPU); the process-wide peak so far.
        row['device_peak_bytes_in_use'] = jax.devices()[0].memory_stats().get(
            'peak_bytes_in_use')
    params = {**params, **exchanged}
    row['round_fn_traces'] = fns.round_fn.num_traces
    if config.eval.at_stage_end:
        row['eval'] = evaluate_encoder(setup.encoder, params, spec.num_blocks,
                                       dataset, **_eval_kwargs(config))
        writer.log(kind='stage_eval', stage=spec.index, **row['eval'])
        print(f'[lwfedssl] stage {spec.index + 1} eval: '
              + ', '.join(f'{k}={v:.2f}' for k, v in row['eval'].items()),
              flush=True)
    return row, params, global_round
