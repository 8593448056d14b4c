"""Communication per client, counted on the pytrees the engine really moves.

Paper §1.3 and §7.1. The round function takes `frozen` (present parts that
are not exchanged) and sends each participant a `Sent` (the exchanged parts
plus any algorithm extras, e.g. FedCA's dictionary), and returns the stacked
uploads; this module only sums bytes of those pytrees, so the figures cannot
drift from the engine.

Download policies:
  default     clients keep the frozen prefix locally between rounds and
              stages; each round they download only the exchanged subtree.
  worst_case  paper Table 5 (clients that join or rejoin): each round a
              client downloads every present part (frozen + exchanged);
              uploads are unchanged.

Neither policy counts how a client gets the final aggregated block(s) of a
stage it needs later as its frozen prefix; the paper's figures leave it out
too. Two separate figures report it:
  stage_end_broadcast_bytes  a broadcast of the newly frozen parts to every
              client at every stage end;
  catch_up_bytes  on demand (what the engine models): a participant that
              lacks frozen parts downloads them before training, e.g. a
              client taking part for the first time in stage 5 downloads
              the embedding and blocks 1-4 (`catch_up`). Under full
              participation both figures are equal; `worst_case` bounds it.
"""

from lwfedssl_jax.utils.tree import num_bytes

POLICIES = ('default', 'worst_case')

# The paper's "GB": bytes / 2**20 / 1000 (MiB, then divided by 1000; §7.1).
PAPER_GB = 2 ** 20 * 1000


def round_bytes(frozen, sent, upload, policy: str) -> tuple[int, int]:
    """(download, upload) bytes of ONE client in one round.

    Args:
      frozen: the frozen-parts pytree given to the round function.
      sent: what the server sent (exchanged parts and any algorithm extras).
      upload: one client's upload pytree (a slice of the stacked uploads),
        or anything with the same leaf shapes.
      policy: 'default' or 'worst_case'.
    """
    if policy not in POLICIES:
        raise ValueError(f'Unknown download policy {policy!r}; choices: {POLICIES}.')
    down = num_bytes(sent) + (num_bytes(frozen) if policy == 'worst_case' else 0)
    return down, num_bytes(upload)


def newly_frozen_bytes(previous_spec, spec, params) -> int:
    """Bytes of parts frozen in `spec` that were trained in `previous_spec`
    (the stage-end broadcast a client needs to extend its frozen stack)."""
    if previous_spec is None:
        return 0
    new = [p for p in spec.frozen if p not in previous_spec.frozen]
    return num_bytes({p: params[p] for p in new})


def catch_up(held, selected, frozen_part_bytes) -> tuple[float, list]:
    """Bytes of the frozen parts the round's participants lack.

    Args:
      held: `[N]` how many parts of the frozen prefix each client holds (in
        prefix order: input parts, block 0, block 1, ...).
      selected: the round's participant ids `[K]`.
      frozen_part_bytes: bytes of each part of this stage's frozen prefix,
        in prefix order.

    Returns:
      (mean catch-up bytes over the participants, the new `held`: every
      participant now holds the whole prefix).
    """
    held = list(held)
    total = 0
    for c in selected:
        total += sum(frozen_part_bytes[held[c]:])
        held[c] = max(held[c], len(frozen_part_bytes))
    return total / max(len(selected), 1), held


def dropped_block_bytes(keep, spec, params) -> float:
    """Mean bytes, over a round's participants, of the exchanged blocks they
    dropped (depth dropout: neither downloaded nor uploaded).

    Args:
      keep: `[K, num_blocks]` bool, the blocks each participant ran.
      spec: the stage (`block_parts` names block i's part; `exchanged`).
      params: the present parts (arrays or shapes).
    """
    sent = [(i, num_bytes(params[p])) for i, p in enumerate(spec.block_parts)
            if p in spec.exchanged]
    return sum(size for row in keep for i, size in sent if not row[i]) / len(keep)


def paper_gb(num: int | float) -> float:
    """Bytes in the paper's "GB" unit."""
    return num / PAPER_GB
