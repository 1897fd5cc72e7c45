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
selected. Every mask starts at 1 and takes ~0.5/lr Adam steps to cross 0.5, so the count is flat at
first; counted from the start (or from the first change) the rule would stop before the mask has begun
to select (docs/method.md).

Cost: a gate at the last position cannot change any earlier position, so each example's keys and
values up to its last token are computed once, without gradient (the prompt shared by all examples
once for all: ``cca.models.shared_prefix``), and every step costs one token's forward and backward per example.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Sequence

import torch

from cca.circuits.config import DCMConfig
from cca.models.components import ComponentMap
from cca.errors import CCAError
from cca.circuits.gating import NNsightGates, hook_gates
from cca.models.registry import input_device
from cca.models.shared_prefix import cache_view, common_prefix_length, decoder, pair_logit_difference, prefix_cache


@dataclass
class DCMResult:
    values: dict[str, torch.Tensor]          # continuous mask per site, in [0, 1]
    selected: dict[str, torch.Tensor]        # bool per site
    history: list[dict] = field(default_factory=list)
    epochs_run: int = 0
    stopped_early: bool = False

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
    """Per-example KV caches up to (not including) the last token, shared prompt computed once."""

    def __init__(self, model, prefixes: Sequence[Sequence[int]], budget_bytes: float):
        self.model, self.prefixes = model, [list(p) for p in prefixes]
        self.shared_len = common_prefix_length(self.prefixes)
        with torch.no_grad():
            self.shared = prefix_cache(model, self.prefixes[0][:self.shared_len])
        self.budget, self.used = budget_bytes, 0
        self.kept: dict[int, object] = {}

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
            self.used += sum(l.keys.numel() * l.keys.element_size() * 2 for l in c.layers)
            self.kept[i] = c
            if progress:
                progress.update(1)

    def get(self, i: int):
        c = self.kept.get(i)
        c = self._compute(i) if c is None else c
        return cache_view(c) if c is not None else None


def _check_finite(loss: torch.Tensor, where: str) -> None:
    if not torch.isfinite(loss):
        raise CCAError(f"DCM loss became {loss.item()} at {where}: lower dcm.lr or dcm.lambdas, or check that "
                       "the model loads in float32 (generation.dtype does not apply to mask training)")


def train_mask(model, cmap: ComponentMap, prefixes: Sequence[Sequence[int]], desired: Sequence[int],
               undesired: Sequence[int], settings: DCMConfig, lam: float, seed: int,
               progress: bool = False) -> DCMResult:
    """Learn a DCM mask for sparsity penalty ``lam`` on Error-Localization examples (token ids; see module
    docstring); ``seed`` fixes the batch order."""
    n = len(prefixes)
    if n == 0:
        raise CCAError("DCM got no Error-Localization examples")
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    names = [s.name for s in cmap.sites]
    sizes = [s.count for s in cmap.sites]
    mask = torch.nn.Parameter(torch.ones(sum(sizes)))
    opt = torch.optim.Adam([mask], lr=settings.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=settings.lr_step_size, gamma=settings.lr_gamma)
    states = ExampleStates(model, prefixes, settings.cache_budget_gib * 2**30)
    bar = _bar(progress, n, "DCM: caching example states")
    states.precompute(bar)
    if bar:
        bar.close()
    nn_gates = NNsightGates(model, cmap) if settings.backend == "nnsight" else None
    body = decoder(model)
    device = input_device(model)
    batches_per_epoch = math.ceil(n / settings.batch_size)
    patience = max(1, math.ceil(settings.early_stop_fraction * batches_per_epoch))
    history, last_count, flat, started = [], mask.numel(), 0, False
    epochs_run, stopped = 0, False
    bar = _bar(progress, settings.epochs * batches_per_epoch, f"DCM lambda={lam:g}")
    for epoch in range(settings.epochs):
        order = torch.randperm(n, generator=gen).tolist()
        for b in range(batches_per_epoch):
            idx = order[b * settings.batch_size:(b + 1) * settings.batch_size]
            scales = dict(zip(names, torch.split(scales_from_mask(mask, settings.unselected), sizes)))
            diffs = []
            with (hook_gates(model, cmap, scales) if nn_gates is None else nullcontext()):
                for i in idx:   # one token per example on top of its cached states
                    inputs = dict(input_ids=torch.tensor([[prefixes[i][-1]]], device=device),
                                  past_key_values=states.get(i), use_cache=True)
                    hidden = (nn_gates.hidden(scales, **inputs) if nn_gates is not None
                              else body(**inputs).last_hidden_state)
                    diffs.append(pair_logit_difference(model, hidden[:, -1], torch.tensor([desired[i]]),
                                                       torch.tensor([undesired[i]])))
            d = torch.cat(diffs)
            loss = -d.mean() + lam * mask.sum().to(d.device)
            _check_finite(loss, f"epoch {epoch + 1}, batch {b + 1}")
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                mask.clamp_(0.0, 1.0)
            count = int((mask > 0.5).sum())
            history.append({"epoch": epoch + 1, "batch": b + 1, "loss": float(loss.detach()),
                            "logit_diff": float(d.detach().mean()),
                            "selected": count, "lr": opt.param_groups[0]["lr"]})
            if bar:
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}", selected=count)
                bar.update(1)
            # the selection has started to settle once at most half of the components remain selected
            started = started or count <= mask.numel() // 2
            flat = flat + 1 if (started and count == last_count) else 0
            last_count = count
            if flat >= patience:
                stopped = True
                break
        sched.step()
        epochs_run = epoch + 1
        if stopped:
            break
    if bar:
        bar.close()
    values = {k: v.detach().clone() for k, v in zip(names, torch.split(mask.detach(), sizes))}
    selected = {k: v > 0.5 for k, v in values.items()}
    return DCMResult(values, selected, history, epochs_run, stopped)


def count_table(cmap: ComponentMap, selected: dict[str, torch.Tensor]):
    """Selected and total components per layer and type (the paper's Table 7), as a DataFrame."""
    import pandas as pd

    rows = [{"layer": s.layer, "kind": s.kind, "selected": int(selected[s.name].sum()), "total": s.count}
            for s in cmap.sites]
    return pd.DataFrame(rows)


def _bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc)
