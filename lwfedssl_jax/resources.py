"""The paper's resource tables without training (compile-only).

    python -m lwfedssl_jax.resources
    python -m lwfedssl_jax.resources --config configs/cifar10_vit_tiny.py --config.blocks_per_stage=2
    python -m lwfedssl_jax.resources --config configs/table2.py:row=fedema,scale=paper --modes e2e

For e2e, layer-wise and progressive (and layer-wise with the worst-case
download of Table 5) it prints, per client: peak memory of one compiled
local step (XLA `memory_analysis`), GFLOPs in the paper's convention and as
XLA counts them over the client's real local steps, and communication in the
paper's "GB" (bytes / 2^20 / 1000), each with its ratio to e2e. It writes
`resources.json`, a bar chart `resources.png` and the per-round traffic curve
`comm_per_round.png` (paper Fig. 5c) to `config.accounting.outdir`.

Everything is derived from the same builders, round functions and tally that
training uses (`predict`), traced with `jax.eval_shape` and compiled, never
run: a test checks that a training run logs exactly these figures.
"""

import copy
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from ml_collections import config_flags

from lwfedssl_jax import (builders, cli, platform, public_set, round_draws, run_state,
                          validation)
from lwfedssl_jax.accounting import comm
from lwfedssl_jax.accounting.tally import ResourceTally
from lwfedssl_jax.errors import ConfigError
from lwfedssl_jax.federated.client import num_local_steps
from lwfedssl_jax.utils.tree import num_bytes, select

MODES = ('e2e', 'layerwise', 'progressive')


def client_sizes(config) -> np.ndarray:
    """`[N]` examples per client: from the config, or the real partition."""
    n = config.accounting.examples_per_client
    if n > 0:
        sizes = np.full(config.fl.num_clients, n, np.int64)
        validation.check_client_data(config, sizes)
        return sizes
    dataset, fed, _ = builders.load_data(config)
    validation.check_client_data(config, fed.sizes, len(dataset.train_images))
    return np.asarray(fed.sizes)


def predict(config, sizes=None) -> dict:
    """Resource figures of one client for `config`, compile-only.

    Args:
      config: a run config; `log.step_flops` decides which stages are
        compiled to measure XLA FLOPs and memory.
      sizes: `[N]` client example counts (default: `client_sizes(config)`).

    Returns:
      {'stages': per-stage rows, 'per_round': per-round figures,
       'resources': ResourceTally.summary(), 'max_step_memory_bytes'}.
    """
    validation.check_config(config)
    setup = builders.build(config)
    sizes = client_sizes(config) if sizes is None else np.asarray(sizes)
    n_max, fl, img = int(sizes.max()), config.fl, config.model.image_size
    data = (jax.ShapeDtypeStruct((len(sizes), n_max, img, img, 3), jnp.uint8),
            jax.ShapeDtypeStruct((len(sizes),), jnp.int32),
            jax.ShapeDtypeStruct((fl.clients_per_round,), jnp.int32),
            jax.ShapeDtypeStruct((fl.clients_per_round,), jnp.bool_))
    public = public_set.abstract_public(setup, config)
    previous, rows, per_round = None, [], []
    tally, held = ResourceTally(), [0] * len(sizes)
    for spec in setup.plan:
        params = run_state.abstract_params(setup, config, spec.index)
        fns = builders.build_stage(setup, spec, config, len(sizes), n_max)
        state = jax.eval_shape(lambda p: builders.init_round_state(
            setup, fns, spec, p, len(sizes)), params)
        row = builders.stage_resources(setup, spec, previous, params, state, public,
                                       fns, config)
        tally.add_stage(row)
        frozen = select(params, spec.frozen)
        sent = jax.eval_shape(fns.round_fn.sent, state.server)
        _, uploads, _ = jax.eval_shape(fns.round_fn.jitted, frozen, state, *data,
                                       jnp.int32(0), jnp.int32(0), jax.random.key(0),
                                       public)
        one_upload = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype),
                                  uploads)
        part_bytes = [num_bytes(frozen[p]) for p in spec.frozen]   # prefix order
        for r in range(spec.rounds):
            ids = np.asarray(round_draws.round_clients(config, spec.index, r, len(sizes)))
            steps = [num_local_steps(int(n), fl.batch_size, fl.local_epochs)
                     for n in sizes[ids]]
            catch_up, held = comm.catch_up(held, ids, part_bytes)
            dropped = (comm.dropped_block_bytes(round_draws.round_keeps(config, spec, r, ids),
                                                spec, params)
                       if fl.depth_dropout else 0)
            used = tally.add_round(frozen, sent, one_upload, row, steps, catch_up, dropped)
            per_round.append({'stage': spec.index, 'round': r, **used})
        rows.append(row)
        previous = spec
    return {'stages': rows, 'per_round': per_round, 'resources': tally.summary(),
            'max_client_state_bytes': max(r['client_state_bytes'] for r in rows),
            'max_step_memory_bytes': max((r['step_memory_bytes'] for r in rows
                                          if 'step_memory_bytes' in r), default=None)}


def format_table(reports: dict) -> str:
    """Markdown table; ratios are to the e2e row."""
    base = reports['e2e']

    def cell(value, ref, fmt):
        if value is None:
            return 'n/a'
        return f'{value:{fmt}} ({value / ref:.2f}x)' if ref else f'{value:{fmt}}'

    lines = ['| method | peak step memory (GiB, XLA) | GFLOPs (paper conv.) '
             '| GFLOPs (XLA, real steps) | comm. ("GB" = B/2^20/1000) |',
             '|---|---|---|---|---|']
    gib = lambda r: None if r['max_step_memory_bytes'] is None else r['max_step_memory_bytes'] / 2**30
    for mode, r in reports.items():
        res, ref = r['resources'], base['resources']
        lines.append(
            f'| {mode} | {cell(gib(r), gib(base), ".3f")} '
            f'| {cell(res["paper_gflops"], ref["paper_gflops"], ".1f")} '
            f'| {cell(res["xla_gflops"], ref["xla_gflops"], ".1f")} '
            f'| {cell(res["comm_paper_gb"], ref["comm_paper_gb"], ".3f")} |')
        if mode == 'layerwise':
            lines.append(f'| layerwise, worst-case download (Table 5) | | | | '
                         f'{cell(res["comm_worst_case_paper_gb"], ref["comm_paper_gb"], ".3f")} |')
    return '\n'.join(lines) + '\n'


def plot(reports: dict, outdir: str) -> list[str]:
    """Bar chart of the three resources and the per-round traffic curve."""
    from lwfedssl_jax.plots import pyplot   # matplotlib only when plotting
    plt = pyplot()

    modes = list(reports)
    metrics = [('Peak step memory (GiB)', lambda r: (r['max_step_memory_bytes'] or 0) / 2**30),
               ('GFLOPs (paper conv.)', lambda r: r['resources']['paper_gflops']),
               ('Communication ("GB")', lambda r: r['resources']['comm_paper_gb'])]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (title, get) in zip(axes, metrics):
        values = [get(reports[m]) for m in modes]
        bars = ax.bar(modes, values, color=['#777777', '#1f77b4', '#ff7f0e'][:len(modes)])
        for b, v in zip(bars, values):
            ax.annotate(f'{v / values[0]:.2f}x', (b.get_x() + b.get_width() / 2, v),
                        ha='center', va='bottom', fontsize=9)
        ax.set_title(title)
    fig.tight_layout()
    paths = [os.path.join(outdir, 'resources.png')]
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for m in modes:
        mb = [(r['bytes_down'] + r['bytes_up']) / 2**20 for r in reports[m]['per_round']]
        ax.plot(np.arange(1, len(mb) + 1), mb, label=m)
    ax.set_xlabel('round')
    ax.set_ylabel('MB per client per round (down + up)')
    ax.set_title('Communication per round (cf. paper Fig. 5c)')
    ax.legend()
    fig.tight_layout()
    paths.append(os.path.join(outdir, 'comm_per_round.png'))
    fig.savefig(paths[1], dpi=120)
    plt.close(fig)
    return paths


def main(argv):
    cli.no_positional_args(argv)
    platform.setup()
    base = _CONFIG.value
    modes = _MODES.value
    if not modes or modes[0] != 'e2e' or set(modes) - set(MODES):
        raise ConfigError('--modes', ','.join(modes), f'must start with e2e and be among '
                          f'{MODES}.', 'e.g. --modes=e2e,layerwise.')
    configs = {}
    for mode in modes:   # every mode checked before the first compiles
        configs[mode] = copy.deepcopy(base)
        configs[mode].mode = mode
        configs[mode].log.step_flops = 'every_stage'
        validation.check_config(configs[mode])
    validation.check_workdir(base.accounting.outdir, 'accounting.outdir')
    sizes = client_sizes(base)
    reports = {}
    for mode, config in configs.items():
        print(f'[resources] {mode}: compiling {len(builders.build(config).plan)} '
              'client step(s)...', flush=True)
        reports[mode] = predict(config, sizes)
    os.makedirs(base.accounting.outdir, exist_ok=True)
    table = format_table(reports)
    with open(os.path.join(base.accounting.outdir, 'resources.json'), 'w') as f:
        json.dump({'config': base.to_dict(), 'reports': reports}, f, indent=1)
    with open(os.path.join(base.accounting.outdir, 'resources.md'), 'w') as f:
        f.write(table)
    paths = plot(reports, base.accounting.outdir)
    print(f'\nResources per client: {base.model.name}, {builders.build(base).encoder.depth} blocks, '
          f'{base.blocks_per_stage} per stage, {base.fl.total_rounds} rounds x '
          f'{base.fl.local_epochs} epochs, batch {base.fl.batch_size}, '
          f'{int(sizes.mean())} examples/client\n\n{table}')
    print('Written:', ', '.join(paths + [os.path.join(base.accounting.outdir, 'resources.json')]))


def _define_flags():
    """Command-line flags (defined only when run as a program, so that the
    module can be imported beside other entry points)."""
    global _CONFIG, _MODES
    _CONFIG = config_flags.DEFINE_config_file(
        'config', None, 'Config to account (default: configs/cifar10_vit_tiny.py).',
        lock_config=True)
    _MODES = flags.DEFINE_list('modes', list(MODES), 'Modes to report (e2e first).')


if __name__ == '__main__':
    _define_flags()
    cli.run(main, default_config='configs/cifar10_vit_tiny.py')
