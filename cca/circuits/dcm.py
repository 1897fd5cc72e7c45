"""Stage 2: DCM, learning which components to amplify (a mask over Q/K/V heads and MLP neurons).

Reference semantics (paper's code, with its per-example loss defect fixed):
one mask value per component, initialised at 1; at the intervention (last) position each component's
activation is multiplied by ``2 * m`` (``unselected: ablate``: m=0 ablates, m=0.5 is the identity, m=1
doubles) or by ``1 + m`` (``unselected: keep``, the paper text's reading: m=0 leaves the component as it
is). Loss = mean over the batch of -(logit_desired - logit_undesired), gathered per example, plus
lambda * sum(m). Adam, StepLR stepped per epoch, masks clamped to [0, 1] after every step; a component
is selected when its mask rounds to 1 (m > 0.5).

Early stop: training stops when the number of selected components has not changed for
``early_stop_fraction`` of an epoch's batches, counted once at most half of the components remain
selected (``early_stop_from: half_selected``; ``start`` counts from the first step, as the reference
does). Every mask starts at 1 and takes ~0.5/lr Adam steps to cross 0.5, so the count is flat at first;
counted from the start (or from the first change) the rule would stop before the mask has begun to select
(docs/method.md).

Cost: a gate at the last position cannot change any earlier position, so each example's keys and
values up to its last token are computed once, without gradient (the prompt shared by all examples
once for all: ``cca.models.shared_prefix``), and every step costs one token's forward and backward per example.
``dcm.step`` says how: ``batched`` stacks the batch's caches (right-padded, with an attention mask that
hides the padding, each last token at its own position: ``next_token_inputs``) and runs one forward and
one backward over the batch's last tokens; ``per_example`` runs one forward per example. Both give the
same masks to float tolerance (a test compares their trajectories).

History: per step the loss, the mean logit difference, the selected count, the lr and the running sum of
lr * lambda (how far the penalty alone would have pushed a mask under plain gradient descent).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from cca.circuits.config import DCMConfig
from cca.models.components import ComponentMap
from cca.errors import CCAError
from cca.circuits.gating import NNsightGates, hook_gates
from cca.models.registry import input_device
from cca.models.shared_prefix import (cache_bytes, cache_view, common_prefix_length, decoder, next_token_inputs,
                                      pair_logit_difference, prefix_cache)


@dataclass
class DCMResult:
    values: dict[str, torch.Tensor]          # continuous mask per site, in [0, 1]
    selected: dict[str, torch.Tensor]        # bool per site
    history: list[dict] = field(default_factory=list)
    epochs_run: int = 0
    stopped_early: bool = False
    sum_lr_lambda: float = 0.0               # sum over steps of lr * lambda
    epoch_seconds: list[float] = field(default_factory=list)   # wall time of each epoch's steps

    @property
    def n_selected(self) -> int:
        return int(sum(int(s.sum()) for s in self.selected.values()))

    @property
    def n_total(self) -> int:
        return int(sum(s.numel() for s in self.selected.values()))


def scales_from_mask(m: torch.Tensor, unselected: str) -> torch.Tensor:
    if unselected == "ablate":
        return 2.0 * m
    if unselected == "keep":
        return 1.0 + m
    raise CCAError(f"dcm.unselected is '{unselected}': use ablate (reference code) or keep (paper text)")


class ExampleStates:
    """Per-example KV caches up to (not including) the last token, shared prompt computed once.

    Memory: the caches kept and, for batched steps, the padded KV of one forward share ``budget_bytes``.
    The padded KV of ``batch`` examples is at most ``batch`` times the longest example's cache; it is
    counted first, at least one example's worth, and a batch whose padded KV exceeds the budget runs in
    forwards of ``per_forward`` examples. The caches kept take the rest; the others are recomputed when
    needed. ``batch`` 0: no padded KV (per-example steps).
    """

    def __init__(self, model, prefixes: Sequence[Sequence[int]], budget_bytes: float, batch: int = 0):
        self.model, self.prefixes = model, [list(p) for p in prefixes]
        self.lengths = [len(p) - 1 for p in self.prefixes]      # cached tokens: all but the last
        self.shared_len = common_prefix_length(self.prefixes)
        with torch.no_grad():
            self.shared = prefix_cache(model, self.prefixes[0][:self.shared_len])
        self.budget, self.used = budget_bytes, 0
        self.kept: dict[int, object] = {}
        self.per_forward = 1
        if batch:
            longest = cache_bytes(self._compute(max(range(len(self.prefixes)), key=self.lengths.__getitem__)))
            self.per_forward = min(batch, max(1, int(budget_bytes // longest))) if longest else batch
            self.used = self.per_forward * longest

    def _compute(self, i: int):
        middle = self.prefixes[i][self.shared_len:-1]
        if not middle:
            return self.shared
        with torch.no_grad():
            out = decoder(self.model)(input_ids=torch.tensor([middle], device=input_device(self.model)), use_cache=True,
                                      past_key_values=cache_view(self.shared) if self.shared is not None else None)
        return out.past_key_values

    def precompute(self, progress=None):
        for i in range(len(self.prefixes)):
            if self.used >= self.budget:
                break
            c = self._compute(i)
            self.used += cache_bytes(c)
            self.kept[i] = c
            if progress:
                progress.update(1)

    def cache(self, i: int):
        """Example i's cache (kept or recomputed); a forward must not extend it (``get`` gives one that may)."""
        c = self.kept.get(i)
        return self._compute(i) if c is None else c

    def get(self, i: int):
        c = self.cache(i)
        return cache_view(c) if c is not None else None


def _check_finite(loss: torch.Tensor, where: str) -> None:
    if not torch.isfinite(loss):
        raise CCAError(f"DCM loss became {loss.item()} at {where}: lower dcm.lr or dcm.lambdas, or check that "
                       "the model loads in float32 (generation.dtype does not apply to mask training)")


class MaskGates:
    """Gated decoder forwards with scales from the current mask (hooks or nnsight backend)."""

    def __init__(self, model, cmap: ComponentMap, mask: torch.Tensor, settings: DCMConfig):
        self.model, self.cmap, self.mask, self.unselected = model, cmap, mask, settings.unselected
        self.names = [s.name for s in cmap.sites]
        self.sizes = [s.count for s in cmap.sites]
        self.nnsight = NNsightGates(model, cmap) if settings.backend == "nnsight" else None

    def scales(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, torch.split(scales_from_mask(self.mask, self.unselected), self.sizes)))

    def hidden(self, scales, inputs: dict) -> torch.Tensor:
        """(batch, pos, hidden) final hidden states of one gated forward."""
        if self.nnsight is not None:
            return self.nnsight.hidden(scales, **inputs)
        with hook_gates(self.model, self.cmap, scales):
            return decoder(self.model)(**inputs).last_hidden_state


def _per_example_backward(gates: MaskGates, states: ExampleStates, idx, desired, undesired) -> torch.Tensor:
    """Backward of the batch's mean -(logit difference), one forward per example; (batch,) differences."""
    scales = gates.scales()
    diffs = []
    for i in idx:   # one token per example on top of its cached states
        inputs = dict(input_ids=torch.tensor([[states.prefixes[i][-1]]], device=input_device(gates.model)),
                      past_key_values=states.get(i), use_cache=True)
        hidden = gates.hidden(scales, inputs)
        diffs.append(pair_logit_difference(gates.model, hidden[:, -1], torch.tensor([desired[i]]),
                                           torch.tensor([undesired[i]])))
    d = torch.cat(diffs)
    (-d.mean()).backward()
    return d.detach()


def _batched_backward(gates: MaskGates, states: ExampleStates, idx, desired, undesired) -> torch.Tensor:
    """The same backward with the batch's last tokens in one forward (``states.per_forward`` at a time)."""
    diffs = []
    for start in range(0, len(idx), states.per_forward):
        part = idx[start:start + states.per_forward]
        inputs = next_token_inputs(gates.model, [states.cache(i) for i in part], [states.lengths[i] for i in part],
                                   [states.prefixes[i][-1] for i in part])
        hidden = gates.hidden(gates.scales(), inputs)                      # (part, 1, hidden)
        d = pair_logit_difference(gates.model, hidden[:, -1], torch.tensor([desired[i] for i in part]),
                                  torch.tensor([undesired[i] for i in part]))
        (-d.sum() / len(idx)).backward()
        diffs.append(d.detach())
    return torch.cat(diffs)


STEPS = {"batched": _batched_backward, "per_example": _per_example_backward}


def train_mask(model, cmap: ComponentMap, prefixes: Sequence[Sequence[int]], desired: Sequence[int],
               undesired: Sequence[int], settings: DCMConfig, lam: float, seed: int,
               progress: bool = False) -> DCMResult:
    """Learn a DCM mask for sparsity penalty ``lam`` on Error-Localization examples (token ids; see module
    docstring); ``seed`` fixes the batch order."""
    n = len(prefixes)
    if n == 0:
        raise CCAError("DCM got no Error-Localization examples")
    if settings.step not in STEPS:
        raise CCAError(f"dcm.step is '{settings.step}': use one of {', '.join(STEPS)}")
    backward = STEPS[settings.step]
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    names = [s.name for s in cmap.sites]
    sizes = [s.count for s in cmap.sites]
    mask = torch.nn.Parameter(torch.ones(sum(sizes)))
    opt = torch.optim.Adam([mask], lr=settings.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=settings.lr_step_size, gamma=settings.lr_gamma)
    batch = min(settings.batch_size, n) if settings.step == "batched" else 0
    states = ExampleStates(model, prefixes, settings.cache_budget_gib * 2**30, batch)
    bar = progress_bar(progress, n, "DCM: caching example states")
    states.precompute(bar)
    if bar:
        bar.close()
    gates = MaskGates(model, cmap, mask, settings)
    batches_per_epoch = math.ceil(n / settings.batch_size)
    patience = max(1, math.ceil(settings.early_stop_fraction * batches_per_epoch))
    history, last_count, flat, started = [], mask.numel(), 0, False
    epochs_run, stopped, lr_lambda, epoch_seconds = 0, False, 0.0, []
    bar = progress_bar(progress, settings.epochs * batches_per_epoch, f"DCM lambda={lam:g}")
    for epoch in range(settings.epochs):
        start = time.perf_counter()
        order = torch.randperm(n, generator=gen).tolist()
        for b in range(batches_per_epoch):
            idx = order[b * settings.batch_size:(b + 1) * settings.batch_size]
            opt.zero_grad()
            d = backward(gates, states, idx, desired, undesired)
            penalty = lam * mask.sum()
            loss = -d.mean() + penalty.detach().to(d.device)
            _check_finite(loss, f"epoch {epoch + 1}, batch {b + 1}")
            penalty.backward()
            lr = opt.param_groups[0]["lr"]
            opt.step()
            with torch.no_grad():
                mask.clamp_(0.0, 1.0)
            count = int((mask > 0.5).sum())
            lr_lambda += lr * lam
            history.append({"epoch": epoch + 1, "batch": b + 1, "loss": float(loss), "logit_diff": float(d.mean()),
                            "selected": count, "lr": lr, "sum_lr_lambda": lr_lambda})
            if bar:
                bar.set_postfix(loss=f"{float(loss):.3f}", selected=count)
                bar.update(1)
            # the selection has started to settle once at most half of the components remain selected
            started = started or settings.early_stop_from == "start" or count <= mask.numel() // 2
            flat = flat + 1 if (started and count == last_count) else 0
            last_count = count
            if flat >= patience:
                stopped = True
                break
        sched.step()
        epochs_run = epoch + 1
        epoch_seconds.append(time.perf_counter() - start)
        if stopped:
            break
    if bar:
        bar.close()
    values = {k: v.detach().clone() for k, v in zip(names, torch.split(mask.detach(), sizes))}
    selected = {k: v > 0.5 for k, v in values.items()}
    return DCMResult(values, selected, history, epochs_run, stopped, lr_lambda, epoch_seconds)


def count_table(cmap: ComponentMap, selected: dict[str, torch.Tensor]):
    """Selected and total components per layer and type (the paper's Table 7), as a DataFrame."""
    import pandas as pd

    rows = [{"layer": s.layer, "kind": s.kind, "selected": int(selected[s.name].sum()), "total": s.count}
            for s in cmap.sites]
    return pd.DataFrame(rows)


def progress_bar(enabled: bool, total: int, desc: str):
    """A tqdm bar of ``total`` steps, or None when progress is off."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc)
