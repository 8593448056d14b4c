"""One federated round: our jitted round function vs a PyTorch loop over
clients, side by side in one run (issue 12, item 6).

    python experiments/benchmarks/round_vs_loop.py [--clients 10,25,50,100] \
        [--examples 32] [--batch 16] [--epochs 1] [--model quickstart] \
        [--modes e2e,layerwise] [--repeats 3] [--chunk 5] [--set key=value ...]

The shape of pfl-research's CIFAR-10 benchmark: many small clients per
round (default 32 images each, batch 16, one local epoch = 2 steps), here
at the quickstart model size, FedAvg, MoCo v3, the last stage of each mode.

Ours: the engine's round function (`builders.build`, `build_stage`,
`init_round_state`, and `resolve_client_chunk` for 'auto'; called as
`experiments/round_bench.py` calls it), once per execution strategy of
`federated.execution.EXECUTIONS` (read at run time), every client holding
`--examples` random uint8 images. The peer (`torch_peer.PeerClient`,
eager): per client, load the global exchanged weights into the model,
reset AdamW and the target, train the client's steps on a fresh
permutation, and add its weights times its size to the running sum; the
round returns the size-weighted average.

Augmentation: the same on both sides, a stand-in chosen to be cheap: view
1 is the batch, view 2 its horizontal mirror (`harness.flip_views` swaps
the engine's `two_views` for it); `--augment engine` keeps the engine's
real augmentation for ours (the peer still mirrors: ours then does more).

Compile time is excluded (each round function runs once before timing);
rounds/s are medians of `--repeats` rounds, each of ours interleaved with
one of the peer, every round starting from the same global weights.
"""

import argparse
import contextlib
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..'))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from experiments.benchmarks import harness, torch_peer  # noqa: E402
from lwfedssl_jax import builders, platform, public_set  # noqa: E402
from lwfedssl_jax.data import augment  # noqa: E402
from lwfedssl_jax.federated import execution as execution_lib  # noqa: E402
from lwfedssl_jax.utils.tree import select  # noqa: E402


def our_round(config, images: np.ndarray):
    """`(one_round(r), chunk)`: the engine's round of the last stage over all
    `[K, N, H, W, 3]` clients (each with N examples, all taking part), as
    `round_bench.round_runner` builds it plus 'auto's chunk resolution; the
    chunk 'auto' chose (else None)."""
    setup = builders.build(config)
    spec = setup.plan[-1]
    params = {}
    for s in setup.plan:
        params = builders.init_new_parts(setup, params, s, config.seed)
    k, n_max, size = images.shape[0], images.shape[1], config.model.image_size
    fns = builders.build_stage(setup, spec, config, k, n_max)
    state = builders.init_round_state(setup, fns, spec, params, k)
    images = jnp.asarray(images)
    sizes, selected = jnp.full((k,), n_max, jnp.int32), jnp.arange(k, dtype=jnp.int32)
    public = public_set.public_reference(setup, config, np.zeros((0, size, size, 3), np.uint8))
    frozen = select(params, spec.frozen)
    fns = builders.resolve_client_chunk(setup, spec, config, fns, frozen, state, images,
                                        sizes, public)

    def one_round(r: int = 0) -> None:
        jax.block_until_ready(fns.round_fn(
            frozen, state, images, sizes, selected, jnp.ones(k, bool), jnp.int32(r),
            jnp.int32(r), jax.random.key(r), public))

    return one_round, (fns.client_chunk.chunk if fns.client_chunk else None)


class PeerRound:
    """FedAvg round of the PyTorch peer, one client after another."""

    def __init__(self, peer: torch_peer.PeerClient, params: dict, exchanged: tuple,
                 images: np.ndarray, batch: int, epochs: int, momentum: float):
        torch_peer.load_params(peer, params)
        self.peer, self.batch, self.epochs, self.momentum = peer, batch, epochs, momentum
        named = dict(peer.named_parameters())
        self.params = {n: named[n] for n in torch_peer.torch_layout(
            {p: params[p] for p in exchanged}, peer.spec)}
        self.global_ = {n: p.detach().clone() for n, p in self.params.items()}
        # The clients' images live on the peer's device, as ours live on the mesh.
        device = next(peer.parameters()).device
        self.data = torch.from_numpy(images).permute(0, 1, 4, 2, 3).contiguous().to(device)  # [K,N,3,H,W]
        self.mean = torch.from_numpy(augment.MEAN).view(1, 3, 1, 1).to(device)
        self.std = torch.from_numpy(augment.STD).view(1, 3, 1, 1).to(device)

    def __call__(self) -> dict:
        """Runs one round from the stored global weights; returns the new ones."""
        total, acc = 0, {n: torch.zeros_like(p) for n, p in self.global_.items()}
        for client in self.data:                      # [N, 3, H, W] uint8
            n = client.shape[0]
            with torch.no_grad():
                for name, p in self.params.items():
                    p.copy_(self.global_[name])
            self.peer.begin_round()
            for _ in range(self.epochs):
                perm = torch.randperm(n, device=client.device)
                for s in range(math.ceil(n / self.batch)):
                    idx = perm[(s * self.batch + torch.arange(self.batch, device=client.device)) % n]
                    x = (client[idx].float() / 255 - self.mean) / self.std
                    self.peer.step(x, x.flip(3), self.momentum)
            with torch.no_grad():
                for name, p in self.params.items():
                    acc[name].add_(p, alpha=n)
            total += n
        return {name: a / total for name, a in acc.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--clients', default='10,25,50,100')
    ap.add_argument('--examples', type=int, default=32, help='images per client')
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--epochs', type=int, default=1)
    ap.add_argument('--model', default='quickstart', choices=[s for _, s, _ in harness.MODELS])
    ap.add_argument('--modes', default='e2e,layerwise')
    ap.add_argument('--executions', default='',
                    help='comma list (default: every name in execution.EXECUTIONS)')
    ap.add_argument('--chunk', type=int, default=5, help='fl.client_chunk for "chunked"')
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--torch-threads', type=int, default=os.cpu_count())
    ap.add_argument('--augment', default='flip', choices=('flip', 'engine'))
    ap.add_argument('--set', action='append', default=[], metavar='KEY=VALUE')
    args = ap.parse_args()
    platform.setup()
    harness.torch_threads()
    torch.set_num_threads(args.torch_threads)
    executions = (args.executions.split(',') if args.executions
                  else list(execution_lib.EXECUTIONS))
    steps = args.epochs * math.ceil(args.examples / args.batch)
    # Traced inside: every round function keeps the stand-in augmentation.
    views = harness.flip_views() if args.augment == 'flip' else contextlib.nullcontext()
    rows = []
    with views:
        for mode in args.modes.split(','):
            for k in (int(c) for c in args.clients.split(',')):
                config = harness.model_config(args.model, mode, args.set)
                config.fl.num_clients = config.fl.clients_per_round = k
                config.fl.batch_size, config.fl.local_epochs = args.batch, args.epochs
                size = config.model.image_size
                images = np.random.default_rng(0).integers(
                    0, 256, (k, args.examples, size, size, 3), dtype=np.uint8)
                setup = builders.build(config)
                spec = setup.plan[-1]
                params = {}
                for s in setup.plan:
                    params = builders.init_new_parts(setup, params, s, config.seed)
                peer = torch_peer.PeerClient(harness.peer_spec(config, setup, spec),
                                             harness.torch_device())
                peer_round = PeerRound(peer, harness.numpy_tree(params), spec.exchanged,
                                       images, args.batch, args.epochs,
                                       float(setup.method.momentum_fn(0.0)))
                for execution in executions:
                    config.fl.client_execution = execution
                    # Only 'chunked' takes a fixed chunk ('auto' refuses one).
                    config.fl.client_chunk = args.chunk if execution == 'chunked' else 0
                    ours, chunk = our_round(config, images)
                    seconds = harness.interleaved_medians(
                        {'ours': ours, 'peer': peer_round}, args.repeats, warmup=1)
                    rows.append((mode, k, execution, chunk, seconds))
                    print(f'{mode} K={k} {execution}{f" (chunk {chunk})" if chunk else ""}: '
                          f'ours {seconds["ours"]:.3f} s, peer {seconds["peer"]:.3f} s',
                          flush=True)
    print(f'\n# {args.model}, last stage; {args.examples} images/client, batch {args.batch}, '
          f'{args.epochs} epoch(s) = {steps} steps/client; augmentation: '
          + ('mirror stand-in on both sides' if args.augment == 'flip'
             else 'engine (ours) vs mirror (peer)')
          + f'; {harness.machine()}; torch {torch.__version__} eager, {args.torch_threads} '
          f'thread(s); compile excluded; median of {args.repeats} rounds\n')
    print('| mode | clients / round | our execution | ours (rounds/s) | PyTorch loop '
          '(rounds/s) | ours / loop | ours (client-steps/s) |')
    print('|---|---|---|---|---|---|---|')
    for mode, k, execution, chunk, s in rows:
        name = execution + (f' (chunk {chunk})' if chunk else '')
        if execution == 'chunked':
            name += f' (chunk {args.chunk})'
        print(f'| {mode} | {k} | {name} | {1 / s["ours"]:.2f} | {1 / s["peer"]:.2f} '
              f'| {s["peer"] / s["ours"]:.2f} | {k * steps / s["ours"]:.0f} |')


if __name__ == '__main__':
    main()
