"""GFLOPs in the paper's convention (§7.1), computed from the stage plan.

Per sample, forward multiply-accumulates (fvcore counts one MAC as one
FLOP); trained parts cost 3x their forward (backward = 2x forward), frozen
parts 1x; the target branch is not counted; one sample per step for MoCo v3
and BYOL (two for SimCLR). "Total GFLOPs" of a client is this per-sample
cost summed over all of its local epochs (E x R), not over its examples.
"""

import jax
import numpy as np

from lwfedssl_jax.models.backbone import Backbone
from lwfedssl_jax.stages import StageSpec


def dense_macs(head_params) -> int:
    """Per-sample MACs of an MLP head: the sum of its 2-D kernel sizes."""
    leaves = jax.tree_util.tree_leaves_with_path(head_params)
    return int(sum(np.prod(x.shape) for path, x in leaves
                   if getattr(path[-1], 'key', None) == 'kernel' and len(x.shape) == 2))


def forward_macs(encoder: Backbone, parts, head_params: dict) -> int:
    """Forward MACs of one sample through encoder `parts` and the given heads."""
    return (sum(encoder.part_forward_macs(p) for p in parts if p not in head_params)
            + sum(dense_macs(h) for h in head_params.values()))


def per_sample_epoch_macs(encoder: Backbone, spec: StageSpec, head_params: dict,
                          samples_per_step: int = 1, depth_dropout: float = 0.0) -> float:
    """Paper-convention cost of one local epoch in stage `spec` (one sample).

    Args:
      encoder: the backbone (gives each encoder part's forward MACs).
      spec: the stage.
      head_params: `{head_name: params}` (shapes suffice) of the SSL heads.
      samples_per_step: 1 for MoCo v3 / BYOL, 2 for SimCLR.
      depth_dropout: probability p that a droppable block
        (`spec.droppable_blocks`: frozen blocks in layer-wise mode, earlier
        trained ones in progressive mode) is skipped: those count (1 - p)
        times (the expected cost; the input parts, the new blocks and the heads
        are never dropped).
    """
    def forward(part):
        if part in head_params:
            return dense_macs(head_params[part])
        return encoder.part_forward_macs(part)

    droppable = set(spec.block_parts[:spec.droppable_blocks])

    def kept(part):
        return (1 - depth_dropout) if part in droppable else 1

    trained = sum(kept(p) * forward(p) for p in spec.trainable)
    frozen = sum(kept(p) * forward(p) for p in spec.frozen)
    total = samples_per_step * (3 * trained + frozen)
    return total if depth_dropout else int(total)


def paper_flops(encoder: Backbone, plan, head_params: dict, local_epochs: int,
                samples_per_step: int = 1) -> list[int]:
    """Per-stage paper-convention FLOPs of one client: rounds x E x epoch cost."""
    return [spec.rounds * local_epochs
            * per_sample_epoch_macs(encoder, spec, head_params, samples_per_step)
            for spec in plan]
