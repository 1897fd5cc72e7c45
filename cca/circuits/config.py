"""Settings of DCM mask training (``dcm`` of a profile)."""
from __future__ import annotations

from dataclasses import dataclass

from cca.settings import Settings


@dataclass(frozen=True)
class DCMConfig(Settings):
    schema_path = ("$defs", "profile", "properties", "dcm")

    lambdas: list | None            # the sweep of sparsity penalties (None in one mask's job: it trains one)
    lr: float                       # Adam
    epochs: int
    batch_size: int
    lr_step_size: int               # StepLR, stepped per epoch
    lr_gamma: float
    early_stop_fraction: float      # stop when the selected count is flat for this fraction of an epoch's batches
    early_stop_from: str            # half_selected: count once at most half remain selected | start (reference)
    unselected: str                 # ablate: scale 2m (reference code) | keep: scale 1+m (paper text)
    backend: str                    # hooks | nnsight (same results)
    step: str                       # batched: one forward over a batch's last tokens | per_example (same results)
    cache_budget_gib: float         # per-example KV caches kept in memory up to this size, recomputed beyond
