"""Stage plans: the ONLY place where end-to-end, layer-wise and progressive differ.

Paper §1.2-1.4. A run is a sequence of `StageSpec`s. Each says which encoder
blocks are present, which parameter parts are trained and exchanged, which
parts the server initialises fresh at the start of the stage, and how many
rounds the stage lasts. Everything downstream (client step, aggregation,
accounting) reads the spec and never the mode.

Parts are the top-level keys of the parameter dict. Their names come from the
backbone (`models/backbone.py`): its input parts (the ViT's `embed`, the
ResNet's `stem`) belong to block group 0, each block is one part, shared
parts (the ViT's `norm`) follow the top block in every stage, and adapter
parts (the ResNet's temporary linear layer to the heads' width, paper §3.3)
exist only in a stage whose top feature width differs from the heads'. The
SSL heads (`projector`, `predictor`) come from the method. Block group g
holds blocks `[g*k, (g+1)*k)` for k = blocks_per_stage.

| mode        | stages | present at stage s | trained = exchanged (but fl.local_parts) |
|-------------|--------|--------------------|------------------------------------------|
| e2e         | 1      | all groups         | input, all blocks, shared, heads         |
| layerwise   | S/k    | groups 0..s        | group s (+input if s=0), shared, adapter, heads |
| progressive | S/k    | groups 0..s        | input, groups 0..s, shared, adapter, heads |
"""

import dataclasses

from lwfedssl_jax.errors import ConfigError, did_you_mean
from lwfedssl_jax.models.backbone import Backbone

MODES = ('e2e', 'layerwise', 'progressive')


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """Static, hashable description of one stage (keys jit caches).

    Attributes:
      index: stage number s, from 0.
      num_blocks: blocks present (the encoder runs blocks `[0, num_blocks)`).
      frozen_blocks: the first `frozen_blocks` blocks (and the input parts if
        > 0) are frozen: run forward-only, once per view, under
        `stop_gradient`. Blocks `[frozen_blocks, num_blocks)` are trained.
      present: every part that exists during the stage.
      trainable: parts differentiated and updated by clients.
      exchanged: parts sent server -> client and back each round.
      new: parts the server initialises at the start of the stage.
      rounds: FL rounds in this stage.
      block_parts: the part of each present block, `[num_blocks]` (what
        depth dropout skips and aggregates per block).
    """
    index: int
    num_blocks: int
    frozen_blocks: int
    present: tuple[str, ...]
    trainable: tuple[str, ...]
    exchanged: tuple[str, ...]
    new: tuple[str, ...]
    rounds: int
    block_parts: tuple[str, ...] = ()

    @property
    def frozen(self) -> tuple[str, ...]:
        """Present parts that are not trained (the frozen prefix)."""
        return tuple(p for p in self.present if p not in self.trainable)

    @property
    def droppable_blocks(self) -> int:
        """Blocks depth dropout may skip: `[0, droppable_blocks)`, every
        present block but the stage's new ones (frozen ones in layer-wise
        mode, earlier trained ones in progressive mode; none in e2e)."""
        return self.num_blocks - sum(p in self.block_parts for p in self.new)


def _group_parts(backbone: Backbone, group: int, blocks_per_stage: int) -> tuple[str, ...]:
    return sum((backbone.block_parts(i) for i in range(
        group * blocks_per_stage, (group + 1) * blocks_per_stage)), ())


def make_stage_plan(mode: str, *, backbone: Backbone, blocks_per_stage: int,
                    total_rounds: int, head_names: tuple[str, ...],
                    local_parts: tuple[str, ...] = ()) -> tuple[StageSpec, ...]:
    """Builds the stage plan of a run.

    Args:
      mode: 'e2e', 'layerwise' or 'progressive'.
      backbone: the encoder (its parts, depth L and adapters).
      blocks_per_stage: blocks added per stage k (must divide L); ignored for
        e2e, which always has a single stage.
      total_rounds: R, split equally over the stages (paper: R = 180 for every
        k, so R_s = 15 k); must be divisible by the number of stages.
      head_names: SSL heads (trained and exchanged in every stage).
      local_parts: parts that are trained but never exchanged (a shared
        part such as the ViT's `norm`, or a head; `fl.local_parts`): each client keeps and trains its own copy
        (the federated algorithm carries it in the client state).

    Returns:
      The stages, in order.

    Raises:
      ValueError: unknown mode, indivisible depth/rounds, or a local part
        that is not shared by every stage.
    """
    if mode not in MODES:
        raise ConfigError('mode', mode, f'unknown; choices: {MODES}.'
                          + did_you_mean(mode, MODES))
    shared = tuple(backbone.shared_parts) + tuple(head_names)
    bad = [p for p in local_parts if p not in shared]
    if bad:
        raise ConfigError('fl.local_parts', tuple(local_parts), f'{bad} cannot stay '
                          f'local; choose among the parts every stage trains: {shared}.')
    plan = _make_plan(mode, backbone, blocks_per_stage, total_rounds, shared)
    return tuple(dataclasses.replace(
        s, exchanged=tuple(p for p in s.exchanged if p not in local_parts))
        for s in plan)


def _make_plan(mode, backbone, blocks_per_stage, total_rounds, shared):
    """The plan with every trainable part exchanged."""
    depth = backbone.depth
    if blocks_per_stage < 1 or depth % blocks_per_stage:
        raise ConfigError(
            'blocks_per_stage', blocks_per_stage, f'must divide the {depth} blocks of '
            f'model.name={backbone.name!r} (paper: 1, 2, 3, 4 or 6 for a 12-block ViT); '
            f'divisors of {depth}: '
            f'{[d for d in range(1, depth + 1) if depth % d == 0]}.')
    num_stages = 1 if mode == 'e2e' else depth // blocks_per_stage
    if total_rounds < num_stages or total_rounds % num_stages:
        raise ConfigError(
            'fl.total_rounds', total_rounds, f'must be a positive multiple of the '
            f'number of stages ({num_stages} for mode={mode}, depth={depth}, '
            f'blocks_per_stage={blocks_per_stage}).',
            'e.g. --config.fl.total_rounds='
            f'{max(1, round(total_rounds / num_stages)) * num_stages}.')
    rounds = total_rounds // num_stages
    if mode == 'e2e':
        parts = _group_parts(backbone, 0, depth) + backbone.adapter_parts(depth) + shared
        return (StageSpec(0, depth, 0, parts, parts, parts, parts, rounds,
                          tuple(backbone.block_part(i) for i in range(depth))),)
    plan = []
    for s in range(num_stages):
        num_blocks = (s + 1) * blocks_per_stage
        # A new adapter every stage that needs one (the feature width changed).
        adapter = backbone.adapter_parts(num_blocks)
        group = _group_parts(backbone, s, blocks_per_stage)
        present = sum((_group_parts(backbone, g, blocks_per_stage) for g in range(s + 1)),
                      ()) + adapter + shared
        new = group + adapter + (shared if s == 0 else ())
        if mode == 'layerwise':
            frozen_blocks = s * blocks_per_stage
            trainable = group + adapter + shared
        else:
            frozen_blocks = 0
            trainable = present
        plan.append(StageSpec(s, num_blocks, frozen_blocks, present, trainable,
                              trainable, new, rounds,
                              tuple(backbone.block_part(i) for i in range(num_blocks))))
    return tuple(plan)
