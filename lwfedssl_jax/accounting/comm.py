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

Neither policy counts the broadcast of the final aggregated block(s) when a
stage ends (needed by clients under `default` to extend their frozen stack):
the paper's figures leave it out too. It is reported separately as
`stage_end_broadcast_bytes`.
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


def paper_gb(num: int | float) -> float:
    """Bytes in the paper's "GB" unit."""
    return num / PAPER_GB
