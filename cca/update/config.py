"""Settings of the targeted update and of the LoRA baseline (``update`` and ``lora`` of a profile)."""
from __future__ import annotations

from dataclasses import dataclass

from cca.settings import Settings


@dataclass(frozen=True)
class UpdateConfig(Settings):
    schema_path = ("$defs", "profile", "properties", "update")

    lrs: list                       # the learning-rate sweep (plain SGD)
    steps: int                      # full-batch steps per learning rate
    eval_steps: list                # steps after which validation runs
    targets: list                   # which rows a selected component updates: q, k, v, up, gate, down
    max_examples: int | None        # a fixed random subset of at most this many pairs (None: all)
    eval_dtype: str                 # dtype of validation and evaluation generation
    micro_batch: int                # examples per forward/backward of the full-batch gradient (memory only)
    loss: str                       # logit_difference (the paper's, unbounded) | log_sigmoid (bounded)
    max_step_norm: float | None     # cap on each step's L2 norm over all trainable values (None: plain SGD)
    base_candidate: bool            # the base model competes in the selection (False: the reference's choice)
    stop_after_drop: float | None   # a candidate stops after a look this far below the base's validation (None: never)


@dataclass(frozen=True)
class LoRAConfig(Settings):
    schema_path = ("$defs", "profile", "properties", "lora")

    r: int
    alpha: float
    dropout: float
    targets: list                   # module names (q_proj, ..., down_proj)
    lrs: list
    epochs: int
    batch_size: int
    warmup_steps: int               # linear warm-up, then cosine decay
    weight_decay: float             # AdamW's
    max_grad_norm: float            # gradients clipped to this L2 norm before each step
    eval_every: int | None          # validation every this many steps and after the last (None: after each epoch)
    max_examples: int | None        # a fixed random subset of at most this many train instances (None: all)
    micro_batch: int                # examples per forward/backward within a batch (memory only)
    base_candidate: bool            # the base model competes in the selection (False: the reference's choice)
