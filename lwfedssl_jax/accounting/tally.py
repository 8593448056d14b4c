"""Running per-client resource totals of a run (one `add_round` per round).

Used by the training loop (on the arrays it really moved) and by the
compile-only `resources` report (on their shapes): one accumulator, so the
two cannot count differently.
"""

import dataclasses

import numpy as np

from lwfedssl_jax.accounting import comm


@dataclasses.dataclass
class ResourceTally:
    """Cumulative resources of ONE client (mean over participating clients).

    Attributes:
      bytes_down: download bytes, `default` policy.
      bytes_down_worst_case: download bytes, `worst_case` policy (Table 5).
      bytes_up: upload bytes.
      paper_flops: paper-convention FLOPs (§7.1).
      xla_flops: XLA FLOPs of the client's real local steps (None when the
        step was not measured in some stage).
      stage_end_broadcast_bytes: final aggregated blocks broadcast at stage
        ends (not in the paper's figures; see accounting/comm.py).
      public_data_bytes: one-off download of the server's public set and
        its reference representations (FedCA; 0 otherwise).
      catch_up_bytes: frozen parts participants lacked and downloaded
        before training (mean over each round's participants; see
        accounting/comm.py; not in the paper's figures).
    """
    bytes_down: int = 0
    bytes_down_worst_case: int = 0
    bytes_up: int = 0
    paper_flops: int = 0
    xla_flops: float | None = 0.0
    stage_end_broadcast_bytes: int = 0
    public_data_bytes: int = 0
    catch_up_bytes: float = 0

    def add_stage(self, stage_row: dict) -> None:
        """Counts what happens once per stage (the stage-end broadcast, the
        public set's one-off download)."""
        self.stage_end_broadcast_bytes += stage_row['stage_end_broadcast_bytes']
        self.public_data_bytes += stage_row['public_data_bytes']

    def add_round(self, frozen, sent, upload, stage_row: dict,
                  client_steps, catch_up_bytes: float = 0,
                  dropped_bytes: float = 0) -> dict:
        """Adds one round and returns this round's per-client figures.

        Args:
          frozen: the frozen parts given to the round function.
          sent: what the round sent each participant (`Sent`: exchanged
            parts + algorithm extras; arrays or shapes).
          upload: one client's upload (arrays or shapes).
          stage_row: the stage's `builders.stage_resources` row.
          client_steps: local steps of each participating client `[K]`.
          catch_up_bytes: this round's `comm.catch_up` mean.
          dropped_bytes: this round's `comm.dropped_block_bytes` (blocks
            neither downloaded nor uploaded).
        """
        down, up = comm.round_bytes(frozen, sent, upload, 'default')
        worst, _ = comm.round_bytes(frozen, sent, upload, 'worst_case')
        down, up, worst = down - dropped_bytes, up - dropped_bytes, worst - dropped_bytes
        step_flops = stage_row.get('step_flops')
        xla = (None if step_flops is None or self.xla_flops is None
               else step_flops * float(np.mean(client_steps)))
        self.bytes_down += down
        self.bytes_down_worst_case += worst
        self.bytes_up += up
        self.paper_flops += stage_row['paper_flops_per_round']
        self.xla_flops = None if xla is None else self.xla_flops + xla
        self.catch_up_bytes += catch_up_bytes
        return {'bytes_down': down, 'bytes_down_worst_case': worst, 'bytes_up': up,
                'paper_flops': stage_row['paper_flops_per_round'], 'xla_flops': xla,
                'catch_up_bytes': catch_up_bytes}

    def summary(self) -> dict:
        """Totals, plus the paper's units (GB = bytes / 2^20 / 1000, GFLOPs)."""
        out = dataclasses.asdict(self)
        out['comm_paper_gb'] = comm.paper_gb(self.bytes_down + self.bytes_up)
        out['comm_worst_case_paper_gb'] = comm.paper_gb(
            self.bytes_down_worst_case + self.bytes_up)
        out['paper_gflops'] = self.paper_flops / 1e9
        out['xla_gflops'] = None if self.xla_flops is None else self.xla_flops / 1e9
        return out
