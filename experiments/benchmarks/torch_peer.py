"""A plain PyTorch peer of our MoCo v3 ViT client step (issue 12, items 5-6).

The same model and update as `lwfedssl_jax`'s `LocalStep.step`, written the
way a PyTorch user would (eager mode, `nn.Module`s, `torch.optim.AdamW`), so
the benchmarks can time both sides on identical weights and views:

* encoder (`models/vit.py`): patch projection (p x p conv, stride p), class
  token, position embedding (MoCo v3's fixed 2-D sine-cosine table or a
  learned one), pre-LN blocks (LayerNorm eps 1e-6, multi-head attention,
  exact-GELU MLP), final LayerNorm of the class token;
* heads (`models/heads.py`, `ssl/mocov3.py`): bias-free Linear layers,
  BatchNorm with batch statistics only (no running averages), ReLU; the
  projector ends in BatchNorm without affine, so does the predictor with
  `pred_last_bn`;
* loss (`ssl/losses.py`): symmetric InfoNCE `l(q1, k2) + l(q2, k1)` at
  temperature tau (times 2 tau with `loss_scale_2tau`);
* momentum target: an EMA copy of the *trainable* encoder parts and the
  projector (not the predictor), updated after the optimiser step;
* AdamW (decoupled weight decay on every trainable tensor, eps 1e-8) over
  the trainable parts only;
* layer-wise mode: the first `frozen_blocks` blocks (and the embedding if
  any is frozen) run once per view under `torch.no_grad()`; only the active
  blocks, the shared final norm and the heads get gradients
  (`stages.StageSpec.trainable`).

This module imports no JAX; `load_params` takes our parameter pytree as
numpy arrays (`{'embed': {...}, 'block_00': {...}, 'norm': ..., 'projector':
..., 'predictor': ...}`) and copies it into the peer, so both sides start
from identical weights. Views are NCHW float32 tensors, normalised like
`data/augment.py`'s output.

Example:
    >>> peer = PeerClient(harness.peer_spec(config, setup, stage_spec))
    >>> load_params(peer, numpy_params)
    >>> loss = peer.step(v1, v2, momentum=0.99)   # v: [B, 3, H, W]
"""

import copy
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class PeerSpec(NamedTuple):
    """Static description of one client step (mirrors our config + stage;
    built from it by `harness.peer_spec`, so no field has a default here).

    Attributes:
      image_size, patch_size, width, depth, num_heads, mlp_dim, pos_embed:
        the ViT (`models/vit.py` `ViTConfig`); `pos_embed` is 'sincos' or
        'learned'.
      proj_hidden, proj_dim, proj_layers, pred_hidden, pred_layers,
        pred_last_bn: the MoCo v3 heads (`ssl/mocov3.py`).
      temperature: tau of InfoNCE; loss_scale: 2 tau or 1.
      learning_rate, weight_decay, b1, b2: AdamW (`configs/common.py`).
      num_blocks: blocks present; frozen_blocks: the frozen prefix (0 for
        e2e; `num_blocks - 1` in the last layer-wise stage).
    """
    image_size: int
    patch_size: int
    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    pos_embed: str
    proj_hidden: int
    proj_dim: int
    proj_layers: int
    pred_hidden: int
    pred_layers: int
    pred_last_bn: bool
    temperature: float
    loss_scale: float
    learning_rate: float
    weight_decay: float
    b1: float
    b2: float
    num_blocks: int
    frozen_blocks: int

    @property
    def num_tokens(self) -> int:
        """Patches plus the class token."""
        return (self.image_size // self.patch_size) ** 2 + 1


def sincos_table(grid: int, width: int, temperature: float = 10000.0) -> np.ndarray:
    """MoCo v3's fixed 2-D sine-cosine table `[1, 1 + grid^2, width]`, class
    token row zero (row index first, as `models/vit.py`)."""
    omega = 1.0 / temperature ** (np.arange(width // 4, dtype=np.float64) / (width // 4))
    y, x = np.meshgrid(np.arange(grid), np.arange(grid), indexing='ij')
    out_y, out_x = y.reshape(-1, 1) * omega, x.reshape(-1, 1) * omega   # [P, D/4]
    table = np.concatenate([np.sin(out_y), np.cos(out_y), np.sin(out_x),
                            np.cos(out_x)], axis=1)
    return np.concatenate([np.zeros((1, width)), table])[None].astype(np.float32)


class Embed(nn.Module):
    """`[B, 3, H, W]` -> `[B, T, D]`: patches, class token, positions."""

    def __init__(self, s: PeerSpec):
        super().__init__()
        self.patch = nn.Conv2d(3, s.width, s.patch_size, stride=s.patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, s.width))
        pos = torch.from_numpy(sincos_table(s.image_size // s.patch_size, s.width))
        if s.pos_embed == 'learned':
            self.pos = nn.Parameter(torch.zeros_like(pos))
        else:   # a constant, as ours: neither trained nor sent
            self.register_buffer('pos', pos)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)         # [B, P, D], row-major
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1)
        return x + self.pos


class Block(nn.Module):
    """Pre-LN block `[B, T, D] -> [B, T, D]`; q, k, v as one fused Linear and
    PyTorch's `scaled_dot_product_attention` (what timm's ViT does)."""

    def __init__(self, s: PeerSpec):
        super().__init__()
        self.heads = s.num_heads
        self.ln_1 = nn.LayerNorm(s.width, eps=1e-6)
        self.qkv = nn.Linear(s.width, 3 * s.width)
        self.out = nn.Linear(s.width, s.width)
        self.ln_2 = nn.LayerNorm(s.width, eps=1e-6)
        self.fc_1 = nn.Linear(s.width, s.mlp_dim)
        self.fc_2 = nn.Linear(s.mlp_dim, s.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(self.ln_1(x)).view(b, t, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)                  # each [B, heads, T, D/heads]
        y = F.scaled_dot_product_attention(q, k, v)
        x = x + self.out(y.transpose(1, 2).reshape(b, t, d))
        return x + self.fc_2(F.gelu(self.fc_1(self.ln_2(x))))   # exact GELU


class Encoder(nn.Module):
    """The ViT: `run(x, start, stop)` runs blocks `[start, stop)` (`start == 0`:
    `x` is images), `pool` the LayerNorm'd class token `[B, D]`."""

    def __init__(self, s: PeerSpec):
        super().__init__()
        self.embed = Embed(s)
        self.blocks = nn.ModuleList(Block(s) for _ in range(s.num_blocks))
        self.norm = nn.LayerNorm(s.width, eps=1e-6)

    def run(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        if start == 0 and stop > 0:
            x = self.embed(x)
        for i in range(start, stop):
            x = self.blocks[i](x)
        return x

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(tokens[:, 0])


def mlp_head(in_dim: int, dims: tuple, last_bn: bool) -> nn.Sequential:
    """MoCo v3's `_build_mlp`: (Linear, BN, ReLU) x (n-1), Linear, [BN no
    affine]; every Linear bias-free, BN on batch statistics only. Layer i's
    Linear is element 3 i, its BN 3 i + 1."""
    layers = []
    for d in dims[:-1]:
        layers += [nn.Linear(in_dim, d, bias=False),
                   nn.BatchNorm1d(d, track_running_stats=False), nn.ReLU()]
        in_dim = d
    layers.append(nn.Linear(in_dim, dims[-1], bias=False))
    if last_bn:
        layers.append(nn.BatchNorm1d(dims[-1], affine=False, track_running_stats=False))
    return nn.Sequential(*layers)


def info_nce(q: torch.Tensor, k: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over the batch of -log softmax(q_i . k_j / tau)[i], rows normalised."""
    logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).T / temperature
    return F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device))


class PeerClient(nn.Module):
    """Online encoder + heads, the EMA target, AdamW: one client's state.

    `step(v1, v2, momentum)` is one optimiser step (our `LocalStep.step`
    from given views); `begin_round()` re-copies the target from the online
    branch and resets AdamW, as our clients do at the start of each round.
    """

    def __init__(self, s: PeerSpec, device: str = 'cpu'):
        super().__init__()
        self.spec = s
        self.encoder = Encoder(s)
        self.projector = mlp_head(s.width, (s.proj_hidden,) * (s.proj_layers - 1)
                                  + (s.proj_dim,), last_bn=True)
        self.predictor = mlp_head(s.proj_dim, (s.pred_hidden,) * (s.pred_layers - 1)
                                  + (s.proj_dim,), last_bn=s.pred_last_bn)
        self.to(device)
        f = s.frozen_blocks
        frozen = list(self.encoder.blocks[:f]) + ([self.encoder.embed] if f else [])
        for module in frozen:
            module.requires_grad_(False)
        self.trainable = [p for p in self.parameters() if p.requires_grad]
        # The target copies the trainable encoder segment and the projector
        # only (a frozen block's copy would never differ from it). Kept out of
        # the module tree so `named_parameters` is the online branch alone.
        target = copy.deepcopy(self.encoder)
        for i in range(f):
            target.blocks[i] = nn.Identity()
        if f:
            target.embed = nn.Identity()
        self._target = (target.requires_grad_(False),
                        copy.deepcopy(self.projector).requires_grad_(False))
        self._pairs = [(t, o) for t_mod, o_mod in ((target, self.encoder),
                                                   (self._target[1], self.projector))
                       for (name, t), o in _matching(t_mod, o_mod)]
        self.begin_round()

    def begin_round(self) -> None:
        """Target <- online trainable parts; a fresh AdamW (state reset)."""
        with torch.no_grad():
            for t, o in self._pairs:
                t.copy_(o)
        s = self.spec
        self.opt = torch.optim.AdamW(self.trainable, lr=s.learning_rate, betas=(s.b1, s.b2),
                                     eps=1e-8, weight_decay=s.weight_decay)

    def prefix(self, view: torch.Tensor) -> torch.Tensor:
        """The frozen prefix's output (forward only); the view if none."""
        with torch.no_grad():
            return self.encoder.run(view, 0, self.spec.frozen_blocks)

    def _encode(self, encoder: Encoder, h: torch.Tensor) -> torch.Tensor:
        return encoder.pool(encoder.run(h, self.spec.frozen_blocks, self.spec.num_blocks))

    def loss(self, h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE from the two views' prefix outputs."""
        s = self.spec
        with torch.no_grad():
            target, projector = self._target
            k1, k2 = (projector(self._encode(target, h)) for h in (h1, h2))
        q1, q2 = (self.predictor(self.projector(self._encode(self.encoder, h)))
                  for h in (h1, h2))
        return s.loss_scale * (info_nce(q1, k2, s.temperature)
                               + info_nce(q2, k1, s.temperature))

    def step(self, v1: torch.Tensor, v2: torch.Tensor, momentum: float) -> torch.Tensor:
        """One AdamW step then the EMA; views `[B, 3, H, W]`; returns the loss
        (before the step, as ours)."""
        loss = self.loss(self.prefix(v1), self.prefix(v2))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():   # target <- m target + (1 - m) online
            torch._foreach_lerp_([t for t, _ in self._pairs], [o for _, o in self._pairs],
                                 1.0 - momentum)
        return loss.detach()


def _matching(target: nn.Module, online: nn.Module):
    """`((name, target_param), online_param)` for every parameter of `target`."""
    online_params = dict(online.named_parameters())
    return [((n, p), online_params[n]) for n, p in target.named_parameters()]


# ------------------------------------------------------------ weights from ours
def torch_layout(params: dict, s: PeerSpec) -> dict:
    """Our parameter pytree (numpy) -> `{peer parameter name: array}` in the
    peer's layout (conv OIHW, Linear `[out, in]`, fused q/k/v).

    Only the parts present in `params` are returned, so a pytree holding just
    the exchanged parts maps to just those parameters.
    """
    out = {}
    if 'embed' in params:
        e = params['embed']
        out['encoder.embed.patch.weight'] = e['patch']['kernel'].transpose(3, 2, 0, 1)
        out['encoder.embed.patch.bias'] = e['patch']['bias']
        out['encoder.embed.cls'] = e['cls']
        if 'pos' in e:
            out['encoder.embed.pos'] = e['pos']
    for i in range(s.num_blocks):
        b = params.get(f'block_{i:02d}')
        if b is None:
            continue
        pre, a = f'encoder.blocks.{i}.', b['attn']
        # flax DenseGeneral q/k/v kernels [D, heads, D/heads]: heads-major,
        # as the peer's view(b, t, 3, heads, D/heads) reads its fused output.
        out[pre + 'qkv.weight'] = np.concatenate(
            [a[n]['kernel'].reshape(s.width, -1).T for n in ('query', 'key', 'value')])
        out[pre + 'qkv.bias'] = np.concatenate(
            [a[n]['bias'].reshape(-1) for n in ('query', 'key', 'value')])
        out[pre + 'out.weight'] = a['out']['kernel'].reshape(-1, s.width).T
        out[pre + 'out.bias'] = a['out']['bias']
        for n in ('ln_1', 'ln_2'):
            out[pre + n + '.weight'], out[pre + n + '.bias'] = b[n]['scale'], b[n]['bias']
        for n in ('fc_1', 'fc_2'):
            out[pre + n + '.weight'], out[pre + n + '.bias'] = b[n]['kernel'].T, b[n]['bias']
    if 'norm' in params:
        out['encoder.norm.weight'] = params['norm']['scale']
        out['encoder.norm.bias'] = params['norm']['bias']
    for head in ('projector', 'predictor'):
        for name, leaf in params.get(head, {}).items():
            kind, i = name.split('_')
            if kind == 'fc':
                out[f'{head}.{3 * int(i)}.weight'] = leaf['kernel'].T
            else:   # bn with affine parameters
                out[f'{head}.{3 * int(i) + 1}.weight'] = leaf['scale']
                out[f'{head}.{3 * int(i) + 1}.bias'] = leaf['bias']
    # Copies (writable, contiguous): JAX's arrays come back read-only.
    return {k: np.array(v, dtype=np.float32, order='C') for k, v in out.items()}


def load_params(peer: PeerClient, params: dict) -> None:
    """Copies our (numpy) parameters into the peer's online branch, then
    starts a round (target re-copied, AdamW reset).

    Raises:
      KeyError: a peer parameter has no counterpart in a full `params`.
    """
    arrays = torch_layout(params, peer.spec)
    named = dict(peer.named_parameters())
    missing = sorted(set(named) - set(arrays))
    if missing:
        raise KeyError(f'No value in our parameters for peer parameters {missing}.')
    with torch.no_grad():
        for name, value in arrays.items():
            named[name].copy_(torch.from_numpy(value))
    peer.begin_round()
