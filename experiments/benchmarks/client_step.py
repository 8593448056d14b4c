"""Our MoCo v3 client step vs a plain PyTorch peer's, side by side in one run
(issue 12, item 5), with a loss-agreement check on identical weights and views.

    python experiments/benchmarks/client_step.py [--batch 64] [--repeats 5] \
        [--models quickstart,vit_tiny] [--modes e2e,layerwise] [--set key=value ...]

Rows: the quickstart ViT and ViT-Tiny (32x32), e2e and the last layer-wise
stage. Our step is the engine's (`LocalStep.step`, built as the roofline
builds it: `harness.build_client_step`), jitted alone; the peer is
`torch_peer.PeerClient` (eager PyTorch, `torch.set_num_threads` = the
machine's cores) holding the same weights.

Augmentation: the peer is timed from given views (two `[B, 3, H, W]`
float tensors). Ours is timed twice: the engine's step as it runs in
training (two-view augmentation on device from uint8 images included), and
the same step from the same given views (its `augment.two_views` swapped
for "take the views given": `harness.views_as_input`). The ratio compares
like with like: both from given views.

Correctness: with the same weights and the same two views, our
`SSLMethod.loss_fn` and the peer's loss; then one step on each side (ours
from the views) and the loss of the updated weights (gradients, AdamW and
EMA checked end to end), and the largest difference of an updated weight.

Timings are medians of `--repeats` calls after two warm-ups (compile
excluded), all sides interleaved so load from other processes hits all
alike. images/s counts the B images of a step (each seen as 2 views).
The peer is timed with each `--torch-threads` count (default: the cores,
then 1): on a CPU shared with other processes, PyTorch's OpenMP pool at one
thread per core stalls whenever one of its threads is descheduled (measured
5x slower than 1 thread while writing this), while XLA's pool degrades
gracefully; the 1-thread column is the peer's best case there.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..'))
import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from experiments.benchmarks import harness, torch_peer  # noqa: E402
from lwfedssl_jax import platform  # noqa: E402
from lwfedssl_jax.utils.tree import select  # noqa: E402


def our_loss(cs: harness.ClientStep, trainable, target, views) -> float:
    """Our MoCo v3 loss (`SSLMethod.loss_fn`) of `trainable` / `target` on
    the given float views `[2, B, H, W, 3]`: the frozen prefix once per view,
    then the trainable segment pooled, as `client.make_local_step` does."""
    enc, spec = cs.setup.encoder, cs.spec
    frozen = select(cs.params, spec.frozen)

    def encode_fn(params, h):
        out = enc.run_segment(params, h, spec.frozen_blocks, spec.num_blocks)
        return enc.head_input(params, out, spec.num_blocks)

    @jax.jit
    def loss(trainable, target, views):
        h1, h2 = (enc.run_segment(frozen, v, 0, spec.frozen_blocks) for v in views)
        return cs.setup.method.loss_fn(trainable, target, encode_fn, h1, h2, None)[0]

    return float(loss(trainable, target, views))


def nchw(views: np.ndarray, device: str) -> tuple:
    """`[2, B, H, W, 3]` numpy -> two `[B, 3, H, W]` torch tensors."""
    return tuple(torch.from_numpy(np.ascontiguousarray(v.transpose(0, 3, 1, 2))).to(device)
                 for v in views)


def agreement(cs: harness.ClientStep, peer: torch_peer.PeerClient, views: np.ndarray,
              step_from_views, device: str) -> dict:
    """Loss of both sides on the same weights and views, before and after one
    step each; the largest |ours - peer| of an updated trainable weight."""
    frozen, trainable, target, opt, _, *rest = cs.args
    v1, v2 = nchw(views, device)
    with torch.no_grad():
        peer_loss = float(peer.loss(peer.prefix(v1), peer.prefix(v2)))
    ours_loss = our_loss(cs, trainable, target, views)
    new_trainable, new_target, _, step_loss = step_from_views(
        frozen, trainable, target, opt, views, *rest)
    peer_step_loss = float(peer.step(v1, v2, float(cs.args[-1])))
    with torch.no_grad():
        peer_after = float(peer.loss(peer.prefix(v1), peer.prefix(v2)))
    ours_after = our_loss(cs, new_trainable, new_target, views)
    named = dict(peer.named_parameters())
    diffs = {n: float(np.max(np.abs(named[n].detach().cpu().numpy() - a))) for n, a in
             torch_peer.torch_layout(harness.numpy_tree(new_trainable), peer.spec).items()}
    worst = max(diffs, key=diffs.get)
    return dict(ours=ours_loss, peer=peer_loss, step_ours=float(step_loss),
                step_peer=peer_step_loss, after_ours=ours_after, after_peer=peer_after,
                max_weight_diff=diffs[worst], worst=worst, diffs=diffs,
                lr=peer.spec.learning_rate)


def measure(label: str, short: str, mode: str, batch: int, repeats: int, sets,
            threads: tuple) -> tuple:
    """One row: both sides on the same weights and views, their agreement,
    and `{side: median seconds}` (sides 'engine', 'views', 'peer<threads>')."""
    config = harness.model_config(short, mode, sets)
    cs = harness.build_client_step(config, batch)
    device = harness.torch_device()
    peer = torch_peer.PeerClient(harness.peer_spec(config, cs.setup, cs.spec), device)
    torch_peer.load_params(peer, harness.numpy_tree(cs.params))
    views = harness.random_views(batch, config.model.image_size)
    views_args = cs.args[:4] + (jax.numpy.asarray(views),) + cs.args[5:]
    engine = jax.jit(cs.fns.local.step).lower(*cs.args).compile()
    with harness.views_as_input():
        from_views = jax.jit(cs.fns.local.step).lower(*views_args).compile()
    check = agreement(cs, peer, views, from_views, device)
    v1, v2 = nchw(views, device)
    momentum = float(cs.args[-1])

    def peer_step(n):
        def run():
            torch.set_num_threads(n)
            peer.step(v1, v2, momentum)
            if device == 'cuda':
                torch.cuda.synchronize()
        return run

    seconds = harness.interleaved_medians({
        'engine': lambda: jax.block_until_ready(engine(*cs.args)),
        'views': lambda: jax.block_until_ready(from_views(*views_args)),
        **{f'peer{n}': peer_step(n) for n in threads}}, repeats)
    print(f'{label} {mode}: ' + ', '.join(f'{k} {v * 1e3:.1f} ms' for k, v in seconds.items())
          + f'; loss ours {check["ours"]:.6f} peer {check["peer"]:.6f}', flush=True)
    return label, mode, seconds, check


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--models', default='quickstart,vit_tiny')
    ap.add_argument('--modes', default='e2e,layerwise')
    ap.add_argument('--torch-threads', default=f'{os.cpu_count()},1',
                    help='comma list: the peer is timed with each torch.set_num_threads')
    ap.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                    help='override of our config, applied before building (repeatable)')
    args = ap.parse_args()
    platform.setup()
    harness.torch_threads()
    threads = tuple(dict.fromkeys(int(n) for n in args.torch_threads.split(',')))
    rows = [measure(label, short, mode, args.batch, args.repeats, args.set, threads)
            for label, short, _ in harness.MODELS if short in args.models.split(',')
            for mode in args.modes.split(',')]
    b = args.batch
    print(f'\n# batch {b}, {harness.machine()}; torch {torch.__version__} eager, '
          f'peer threads {threads}, device {harness.torch_device()}; median of {args.repeats} '
          f'after two warm-ups{"; --set " + " ".join(args.set) if args.set else ""}\n')
    print('| model | mode (last stage) | ours: engine step, augmentation included (img/s) '
          '| ours: from given views (img/s) | '
          + ' | '.join(f'peer, {n} thread(s): from given views (img/s)' for n in threads)
          + ' | ' + ' | '.join(f'ours / peer {n} thr. (from views)' for n in threads)
          + ' | augmentation share of our step |')
    print('|---|---|' + '---|' * (3 + 2 * len(threads)))
    for label, mode, s, _ in rows:
        print(f'| {label} | {mode} | {b / s["engine"]:.0f} | {b / s["views"]:.0f} | '
              + ' | '.join(f'{b / s[f"peer{n}"]:.0f}' for n in threads) + ' | '
              + ' | '.join(f'{s[f"peer{n}"] / s["views"]:.2f}' for n in threads)
              + f' | {max(0.0, 1 - s["views"] / s["engine"]):.0%} |')
    print('\nLoss agreement (same weights, same two views, float32):\n')
    print('| model | mode | loss ours | loss peer | rel. diff | after 1 step: ours | peer '
          '| rel. diff | largest abs weight diff after 1 step (lr; parameter) |')
    print('|---|---|---|---|---|---|---|---|---|')
    for label, mode, _, c in rows:
        rel = abs(c['ours'] - c['peer']) / abs(c['ours'])
        rel_after = abs(c['after_ours'] - c['after_peer']) / abs(c['after_ours'])
        print(f'| {label} | {mode} | {c["ours"]:.7f} | {c["peer"]:.7f} | {rel:.1e} '
              f'| {c["after_ours"]:.7f} | {c["after_peer"]:.7f} | {rel_after:.1e} '
              f'| {c["max_weight_diff"]:.1e} ({c["lr"]:.1e}; {c["worst"]}) |')


if __name__ == '__main__':
    main()
