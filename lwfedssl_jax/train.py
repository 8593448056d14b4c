"""The training loop.

    for stage in plan:                       # stages.py: e2e / layerwise / progressive
        server initialises the stage's new parts
        build the stage's jitted round function once (builders.py)
        the stage's round state: server params, server optimiser, algorithm
            extras, every client's persistent state [N, ...]
        for round in stage:
            draw clients (round_draws.py) -> round_fn(frozen, round_state, ...)
                -> aggregate; round r + 1 is dispatched before round r's
                results are read, so the host's work overlaps a round
            log loss and cumulative resources (bytes down/up, FLOPs)
            checkpoint every `checkpoint.every_rounds` (run_state.py)
        evaluate (`eval.protocols`) at the stage end
    final evaluation (+ random-encoder baseline), summary.json

Outputs in `workdir`: `config.json`, `metrics.jsonl` (one line per round and
per evaluation), `summary.json`, `partition.json` (the client split),
`plots/*.png` (`plots.py`) and `tensorboard/` (`summaries.py`).
"""

import os
import time

import jax
import ml_collections
import numpy as np

from lwfedssl_jax import (builders, distributed, plots, public_set, round_draws, run_state,
                          sharding, summaries, validation)
from lwfedssl_jax.accounting import comm
from lwfedssl_jax.data import partition_report
from lwfedssl_jax.data.federated import FederatedData
from lwfedssl_jax.evaluation import monitor
from lwfedssl_jax.evaluation.monitor import evaluate_encoder
from lwfedssl_jax.progress import RoundProgress
from lwfedssl_jax.utils import rng
from lwfedssl_jax.utils.tree import num_bytes, select
from lwfedssl_jax.writers import DiscardWriter, RunWriter


def eval_kwargs(config) -> dict:
    """Keyword arguments of `evaluate_encoder` from `config.eval`: the
    protocols, their settings (the eval block) and the seed."""
    return dict(protocols=tuple(config.eval.protocols), settings=config.eval.to_dict(),
                seed=config.seed)


def eval_datasets(config, dataset) -> dict:
    """The stage-end and final evaluations' datasets (`monitor.eval_datasets`):
    `{'': dataset}` (the pre-training data) when `eval.datasets` is empty,
    else each source loaded at `model.image_size` under its short name."""
    return monitor.eval_datasets(
        tuple(config.eval.datasets), dataset,
        lambda s: dataset if s == config.data.source else builders.load_source(config, s))


def run(config: ml_collections.ConfigDict, workdir: str,
        on_stage_end=None) -> dict:
    """Trains according to `config`, writing outputs to `workdir`.

    If `workdir` holds checkpoints of the same config, the run resumes from
    the latest readable one (bit-identical to an uninterrupted run).

    Args:
      config: a config from `configs/` (locked ConfigDict).
      workdir: output directory (created if needed).
      on_stage_end: optional `fn(spec, params)` called after every stage with
        the server's parameters (hook for tests).

    In a multi-process run (`distributed.py`) every process calls this with
    the same config and workdir; process 0 alone writes the run's files.

    Returns:
      The summary dict (also written to `workdir/summary.json`) plus the
      final server parameters (numpy) under 'params'.
    """
    t_start = time.time()
    validation.check_config(config)
    validation.check_workdir(workdir)
    setup = builders.build(config)
    dataset, fed, public_images = builders.load_data(config)
    validation.check_client_data(config, fed.sizes, len(dataset.train_images))
    # With a client mesh, every round input the round does not split itself
    # (client data, server parameters, the frozen prefix, restored state) is
    # replicated on all its devices, of every process in a multi-process run.
    mesh = sharding.make_client_mesh(config.fl.mesh_devices)
    fed = fed._replace(images=sharding.put_replicated(fed.images, mesh),
                       sizes=sharding.put_replicated(fed.sizes, mesh))
    ckpt = run_state.open_checkpoints(config, setup, workdir)
    primary = distributed.is_primary()
    writer = None
    try:
        public = public_set.public_reference(setup, config, public_images)
        state = run_state.restore_or_start(setup, config, workdir, ckpt, fed, mesh)
        writer = (RunWriter(workdir, resume_step=state.global_round) if primary
                  else DiscardWriter())
        writer.write_json('config.json', config.to_dict())
        if primary:
            # An unlabelled source is reported as one class (client sizes only).
            split = partition_report.write_partition_report(
                workdir, fed.indices, fed.labels, max(dataset.num_classes, 1))
            print(f'[lwfedssl] partition {split["hash"][:16]}: label histogram per '
                  f'client in {os.path.join(workdir, partition_report.REPORT_FILE)}',
                  flush=True)
        summary, params = _train(setup, config, dataset, fed, public, state, writer,
                                 ckpt, on_stage_end, t_start, mesh)
    finally:
        if writer is not None:
            writer.close()
        if ckpt is not None:
            ckpt.close()   # waits for in-flight asynchronous saves
    if primary:
        paths = plots.plot_run(workdir)
        print(f'[lwfedssl] plots: {", ".join(paths)}; TensorBoard: tensorboard --logdir '
              f'{os.path.join(workdir, summaries.SUBDIR)}', flush=True)
    return {**summary, 'params': distributed.to_host(params)}



def _train(setup, config, dataset, fed, public, state, writer, ckpt, on_stage_end,
           t_start, mesh):
    """The stages from `state` on, the final evaluation and the summary."""
    print(f'[lwfedssl] {config.mode}: {len(setup.plan)} stage(s) x '
          f'{setup.plan[0].rounds} rounds, {fed.num_clients} clients '
          f'(sizes {int(fed.sizes.min())}-{int(fed.sizes.max())}), '
          f'data {config.data.source} {dataset.train_images.shape}'
          + (f'; resumed after {state.global_round} rounds' if state.global_round else ''),
          flush=True)
    evals = eval_datasets(config, dataset)   # loaded and checked before round 1
    for spec in setup.plan[state.stage:]:
        state = _run_stage(setup, spec, config, state, fed, public, writer,
                           evals, ckpt, mesh)
        if on_stage_end is not None:
            on_stage_end(spec, state.params)
    params, stage_rows = state.params, state.stage_rows
    final = evaluate_encoder(setup.encoder, distributed.to_host(params),
                             setup.plan[-1].num_blocks,
                             evals, **eval_kwargs(config))
    writer.log(kind='final_eval', step=state.global_round, **final)
    writer.tb.scalars(state.global_round, {f'final/{k}': v for k, v in final.items()})
    summary = {
        'mode': config.mode, 'final_eval': final, 'stages': stage_rows,
        'partition_hash': partition_report.partition_hash(fed.indices),
        'evals': [{'stage': r['stage'], **r['eval']} for r in stage_rows
                  if 'eval' in r],
        'fl_algorithm': config.fl.algorithm, 'ssl_method': config.ssl.name,
        'resources': state.tally.summary(),
        'max_client_state_bytes': max(r['client_state_bytes'] for r in stage_rows),
        'max_trained_params_per_round': max(r['trained_params'] for r in stage_rows),
        'max_exchanged_params_per_round': max(r['exchanged_params'] for r in stage_rows),
        'last_stage_step_flops': stage_rows[-1].get('step_flops'),
        'max_step_memory_bytes': max((r['step_memory_bytes'] for r in stage_rows
                                      if 'step_memory_bytes' in r), default=None),
    }
    if config.eval.random_baseline:
        rand = setup.encoder.init(rng.stream(config.seed, rng.RANDOM_BASELINE))
        summary['random_encoder_eval'] = evaluate_encoder(
            setup.encoder, rand, setup.encoder.depth, evals,
            **eval_kwargs(config))
    summary['wall_time_s'] = time.time() - t_start
    writer.write_json('summary.json', summary)
    print(format_resources(summary), flush=True)
    return summary, params


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


def _run_stage(setup, spec, config, state: run_state.RunState, fed: FederatedData, public,
               writer, evals, ckpt, mesh) -> run_state.RunState:
    """Runs the remaining rounds of one stage; returns the state after it."""
    first = state.next_round
    params, tally, global_round = state.params, state.tally, state.global_round
    if first == 0:
        params = sharding.put_replicated(
            builders.init_new_parts(setup, params, spec, config.seed), mesh)
    previous = setup.plan[spec.index - 1] if spec.index else None
    fns = builders.build_stage(setup, spec, config, fed.num_clients, fed.max_examples)
    round_state = state.round_state if first else builders.init_round_state(
        setup, fns, spec, params, fed.num_clients)
    frozen = select(params, spec.frozen)
    fns = builders.resolve_client_chunk(setup, spec, config, fns, frozen, round_state,
                                        fed.images, fed.sizes, public)   # 'auto' only
    row = builders.stage_resources(setup, spec, previous, params, round_state,
                                   public, fns, config)
    if first == 0:
        tally.add_stage(row)
    sizes = np.asarray(fed.sizes)
    sent = jax.eval_shape(fns.round_fn.sent, round_state.server)   # fixed per stage
    part_bytes = [num_bytes(frozen[p]) for p in spec.frozen]       # prefix order
    held = state.held
    if first == 0:   # what a client trains on, at the stage's first round
        shown = np.asarray(fed.images[0][:min(8, int(sizes[0]))])
        grid = summaries.views_grid(shown, rng.fold(rng.stream(
            config.seed, rng.SUMMARY_VIEWS), spec.index), setup.augment_cfg)
        writer.tb.image(f'augment/stage_{spec.index + 1}', global_round + 1, grid)
    progress = RoundProgress(spec.index, len(setup.plan), first, spec.rounds,
                             config.log.progress)
    pending = None   # a mid-stage checkpoint, saved once the next round is dispatched

    def launch(r, round_state, rounds_done):
        # Dispatches round r (asynchronous): its participants, reporters and
        # key are drawn from the seed, so they need nothing from round r - 1.
        selected = round_draws.round_clients(config, spec.index, r, fed.num_clients)
        reported = round_draws.round_reports(config, spec.index, r)
        key = rng.fold(rng.stream(config.seed, rng.TRAIN), spec.index, r)
        return selected, reported, fns.round_fn(
            frozen, round_state, fed.images, fed.sizes, selected, reported,
            np.int32(rounds_done), np.int32(r), key, public)

    t_last = time.time()   # the stage's first round time includes its compilation
    launched = launch(first, round_state, global_round)
    for r in range(first, spec.rounds):
        selected, reported, (round_state, uploads, metrics) = launched
        # Resources are counted on the shapes of what really travelled; the
        # uploads' values are not needed, so their buffers go now.
        one_upload = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), uploads)
        del uploads
        launched = None   # nothing left holding round r's upload buffers
        # Round r + 1 is queued on the devices before round r's results are
        # read (which waits for them): the host's per-round work below
        # (metrics, tally, logs, the checkpoint's synchronous part) then
        # overlaps round r + 1 instead of leaving the devices idle. The
        # results are those of the one-round-at-a-time loop: round r + 1's
        # inputs are round r's state and values drawn from the seed.
        if r + 1 < spec.rounds:
            launched = launch(r + 1, round_state, global_round + 1)
        if pending is not None:   # orbax's synchronous part overlaps the rounds
            run_state.save(ckpt, pending, fed)
            pending = None
        losses, steps = np.asarray(metrics['loss']), np.asarray(metrics['steps'])
        ids, reported = np.asarray(selected), np.asarray(reported)
        if not reported.any():
            print(f'[lwfedssl] stage {spec.index + 1} round {r + 1}: no participant '
                  'reported (fl.dropout); the server state is unchanged.', flush=True)
        if not np.isfinite(losses).all():
            raise FloatingPointError(
                f'Non-finite loss at stage {spec.index}, round {r} (global '
                f'{global_round}), clients {ids[~np.isfinite(losses)].tolist()}; '
                'lower optim.base_lr or check the data. The last good checkpoint '
                'is kept.')
        catch_up, held = comm.catch_up(held, ids, part_bytes)
        dropped = comm.dropped_block_bytes(np.asarray(metrics['keep']), spec, params)
        used = tally.add_round(frozen, sent, one_upload, row, steps, catch_up, dropped)
        global_round += 1
        loss = float(np.average(losses, weights=sizes[ids]))
        # Rounds overlap the host's work, so a round's time is the interval
        # between two rounds' results (the stage's first: since its dispatch).
        round_time, t_last = time.time() - t_last, time.time()
        divergence = float(metrics['divergence'])
        cumulative = tally.summary()
        writer.log(kind='round', step=global_round, stage=spec.index, round=r,
                   global_round=global_round - 1, loss=loss, client_loss=losses,
                   clients=ids, reported=reported, client_steps=steps,
                   divergence=divergence, round_time_s=round_time,
                   **{f'{k}_per_client': v for k, v in used.items()},
                   cumulative=cumulative)
        writer.tb.scalars(global_round, {
            **summaries.round_scalars(loss, used, cumulative, round_time),
            'fl/divergence': divergence, 'fl/clients_reported': int(reported.sum())})
        progress.update(r, loss, round_time, used['bytes_down'] + used['bytes_up'])
        if (ckpt is not None and r + 1 < spec.rounds
                and global_round % config.checkpoint.every_rounds == 0):
            pending = run_state.RunState({**params, **round_state.server.params}, round_state,
                               spec.index, r + 1, global_round, tally,
                               state.stage_rows, held)
    # No mid-stage checkpoint is left pending here: one is only set when a
    # round of this stage follows (r + 1 < rounds), whose call saves it.
    progress.close()
    if jax.local_devices()[0].memory_stats():
        # Accelerators only (None on CPU); the process-wide peak so far.
        row['device_peak_bytes_in_use'] = jax.local_devices()[0].memory_stats().get(
            'peak_bytes_in_use')
    params = {**params, **round_state.server.params}
    row['round_fn_traces'] = fns.round_fn.num_traces
    if config.eval.at_stage_end:   # on each process's own devices
        row['eval'] = evaluate_encoder(setup.encoder, distributed.to_host(params),
                                       spec.num_blocks, evals, **eval_kwargs(config))
        writer.log(kind='stage_eval', step=global_round, stage=spec.index, **row['eval'])
        writer.tb.scalars(global_round, {f'eval/{k}': v for k, v in row['eval'].items()})
        print(f'[lwfedssl] stage {spec.index + 1} eval: '   # top-1s; the rest is logged
              + ', '.join(f'{k}={v:.2f}' for k, v in row['eval'].items()
                          if k.endswith('_top1')), flush=True)
    # Client state and server extras end with the stage (each stage is an
    # independent FL process for them; see federated/algorithms/base.py).
    done = run_state.RunState(params, None, spec.index, spec.rounds, global_round, tally,
                    state.stage_rows + [row], held)
    if ckpt is not None:
        run_state.save(ckpt, done, fed)   # every stage end, whatever every_rounds says
    return run_state.RunState(params, None, spec.index + 1, 0, global_round, tally,
                    done.stage_rows, held)
