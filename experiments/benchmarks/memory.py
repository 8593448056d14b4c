"""Peak memory of one client step, ours vs the PyTorch peer's, at the same
batch (issue 12, items 5-6).

    python experiments/benchmarks/memory.py [--batch 64] [--steps 2] \
        [--models quickstart,vit_tiny] [--modes e2e,layerwise] [--set key=value ...]

Each measurement runs in its own subprocess (a fresh interpreter: nothing
from another measurement stays resident), e2e and the last layer-wise
stage, quickstart ViT and ViT-Tiny. Both sides step from the same given
float views (ours: the engine's `LocalStep.step` with its `two_views`
swapped for "take the views given", `harness.views_as_input`; the peer:
`torch_peer.PeerClient.step`), `--steps` steps. Ours donates its
trainable parts, target and optimiser state and carries them from step to
step, as the engine's `lax.scan` carry is updated in place; the peer's
optimiser updates in place too.

On CPU: the process's RSS just before the first step (after the model,
target and optimiser exist, and, for ours, after the step is compiled),
its peak RSS over the steps (`resource.getrusage(...).ru_maxrss`, whose
high-water mark is reset after compiling by writing 5 to
`/proc/self/clear_refs`, so compilation's own memory is not counted), and
the increase. PyTorch allocates AdamW's moments lazily in the first step,
so the peer's increase includes them (2 x 4 bytes per trainable weight;
printed), while ours exist before. On a GPU (selected automatically when
JAX runs on one): `peak_bytes_in_use` of JAX's device and
`torch.cuda.max_memory_allocated()`, and their increase over the bytes in
use before the first step.

Also printed: XLA's `memory_analysis()` of our compiled step (arguments +
outputs + temporaries - aliased, as `accounting/xla_cost.py` counts it,
and the temporaries alone). `--set key=value` applies to our config before
building (and to the peer's sizes, which are read from it), so a variant
(e.g. a rematerialisation or compute-dtype key) is measured without code
changes.
"""

import argparse
import json
import os
import resource
import subprocess
import sys

MIB = 2**20


def rss_bytes() -> int:
    """Current resident set size."""
    with open('/proc/self/status') as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith('VmRSS'))
    return kib * 1024


def reset_peak() -> bool:
    """Resets the kernel's RSS high-water mark (Linux >= 4.0); False if not
    allowed (the peak then includes everything since the process started)."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KiB on Linux


def child(side: str, short: str, mode: str, batch: int, steps: int, sets) -> dict:
    """One measurement in this (fresh) process; returns the figures."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..'))
    import jax
    from experiments.benchmarks import harness
    from lwfedssl_jax.accounting.xla_cost import memory_bytes
    config = harness.model_config(short, mode, sets)
    cs = harness.build_client_step(config, batch)
    views = harness.random_views(batch, config.model.image_size)
    gpu = jax.default_backend() == 'gpu'
    out = {'platform': jax.default_backend()}
    if side == 'ours':
        # The fresh target aliases the trainable parts' buffers: copy it so
        # each donated buffer is donated once.
        target = jax.tree.map(jax.numpy.copy, cs.args[2])
        args = cs.args[:2] + (target, cs.args[3], jax.numpy.asarray(views)) + cs.args[5:]
        # Trainable, target and optimiser state donated and carried from step
        # to step, as the engine's `lax.scan` carry updates them in place (the
        # peer's optimiser also updates in place).
        with harness.views_as_input():
            step = jax.jit(cs.fns.local.step, donate_argnums=(1, 2, 3)).lower(
                *args).compile()
        mem = step.memory_analysis()
        out.update(xla_total=memory_bytes(step), xla_temp=mem.temp_size_in_bytes)
        device = jax.devices()[0]

        def run():
            nonlocal args
            trainable, target, opt_state, loss = step(*args)
            jax.block_until_ready(loss)
            args = (args[0], trainable, target, opt_state) + args[4:]

        def in_use():
            return device.memory_stats()['bytes_in_use'] if gpu else rss_bytes()

        def peak():
            return device.memory_stats()['peak_bytes_in_use'] if gpu else peak_rss_bytes()
    else:
        import torch
        from experiments.benchmarks import torch_peer
        harness.torch_threads()
        out['threads'] = torch.get_num_threads()
        dev = harness.torch_device()
        peer = torch_peer.PeerClient(harness.peer_spec(config, cs.setup, cs.spec), dev)
        torch_peer.load_params(peer, harness.numpy_tree(cs.params))
        out['adam_bytes'] = 2 * 4 * sum(p.numel() for p in peer.trainable)
        del cs   # our arrays: not the peer's memory
        v1, v2 = (torch.from_numpy(v.transpose(0, 3, 1, 2).copy()).to(dev) for v in views)

        def run():
            peer.step(v1, v2, 0.99)
            if gpu:
                torch.cuda.synchronize()

        def in_use():
            return torch.cuda.memory_allocated() if gpu else rss_bytes()

        def peak():
            return torch.cuda.max_memory_allocated() if gpu else peak_rss_bytes()
    import gc
    gc.collect()
    out['before'] = in_use()
    out['peak_reset'] = reset_peak() if not gpu else True
    if gpu and side == 'peer':
        torch.cuda.reset_peak_memory_stats()
    for _ in range(steps):
        run()
    out['peak'] = peak()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--steps', type=int, default=2)
    ap.add_argument('--models', default='quickstart,vit_tiny')
    ap.add_argument('--modes', default='e2e,layerwise')
    ap.add_argument('--set', action='append', default=[], metavar='KEY=VALUE')
    ap.add_argument('--child', nargs=3, metavar=('SIDE', 'MODEL', 'MODE'), help=argparse.SUPPRESS)
    args = ap.parse_args()
    sets = sum((['--set', s] for s in args.set), [])
    if args.child:
        print(json.dumps(child(*args.child, args.batch, args.steps, args.set)))
        return
    # The parent imports neither JAX nor torch: a child's peak RSS starts
    # from this small process, not from a loaded one.
    rows = []
    for short in args.models.split(','):
        for mode in args.modes.split(','):
            row = {}
            for side in ('ours', 'peer'):
                done = subprocess.run(
                    [sys.executable, __file__, '--child', side, short, mode,
                     '--batch', str(args.batch), '--steps', str(args.steps), *sets],
                    capture_output=True, text=True, check=False)
                if done.returncode:
                    sys.exit(f'{side} {short} {mode} failed:\n{done.stderr[-3000:]}')
                row[side] = json.loads(done.stdout.strip().splitlines()[-1])
                r = row[side]
                print(f'{short} {mode} {side}: before {r["before"] / MIB:.0f} MiB, peak '
                      f'{r["peak"] / MIB:.0f} MiB', flush=True)
            rows.append((short, mode, row))
    gpu = rows[0][2]['ours']['platform'] == 'gpu'
    what = ('device bytes in use (JAX memory_stats / torch.cuda)' if gpu
            else 'process RSS (ru_maxrss)')
    resets = all(r[s]['peak_reset'] for _, _, r in rows for s in ('ours', 'peer'))
    print(f'\n# batch {args.batch}, {args.steps} steps from given views; {what}; platform '
          f'{rows[0][2]["ours"]["platform"]}; peer torch threads '
          f'{rows[0][2]["peer"].get("threads")}; peak reset before the first step: '
          f'{resets}{"; --set " + " ".join(args.set) if args.set else ""}\n')
    print('| model | mode (last stage) | ours: before (MiB) | ours: peak (MiB) '
          '| ours: increase (MiB) | peer: before (MiB) | peer: peak (MiB) '
          '| peer: increase (MiB) (of which AdamW moments) | ours / peer increase '
          '| XLA memory_analysis of our step: total (temp) (MiB) |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for short, mode, r in rows:
        o, p = r['ours'], r['peer']
        inc_o, inc_p = o['peak'] - o['before'], p['peak'] - p['before']
        print(f'| {short} | {mode} | {o["before"] / MIB:.0f} | {o["peak"] / MIB:.0f} '
              f'| {inc_o / MIB:.0f} | {p["before"] / MIB:.0f} | {p["peak"] / MIB:.0f} '
              f'| {inc_p / MIB:.0f} ({p["adam_bytes"] / MIB:.1f}) '
              f'| {inc_o / max(inc_p, 1):.2f} '
              f'| {o["xla_total"] / MIB:.1f} ({o["xla_temp"] / MIB:.1f}) |')


if __name__ == '__main__':
    main()
