"""The selection both the targeted update and LoRA use: the base model and every trained candidate
(one per learning rate, and per mask), chosen by validation accuracy alone.

A candidate is chosen only when its best validation is strictly above the best so far, the base model
first, so a tie keeps the base model (``base_candidate: true``, this project's default). With
``base_candidate: false`` (the reference code's choice) the base model is only the fallback of a sweep that
validated nothing: the best-validated updated model is kept even when it validates below the base model.
"""
from __future__ import annotations

import math
from typing import Iterable


def choose(base: dict, runs: Iterable[tuple[dict, list[dict], object]],
           base_candidate: bool = True) -> tuple[list[dict], dict, object]:
    """(every candidate's curve rows, the chosen record, its state; None when the base model is chosen).

    ``base``: the base model's record (with ``val_accuracy``); ``runs`` yields per candidate its record at
    its best look (``val_accuracy`` None when it was never validated), its curve rows and its state there.
    ``runs`` is consumed one candidate at a time, so a generator may restore the model between them.
    """
    rows, best, best_state = [], dict(base), None
    for record, curve, state in runs:
        rows += curve
        value = record["val_accuracy"]
        if state is None or value is None:
            continue
        if value > best["val_accuracy"] or (not base_candidate and best_state is None):
            best, best_state = record, state
    return rows, best, best_state


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _best_validated(curve: Iterable[dict], needs: str) -> dict | None:
    """The best-validated candidate row of a sweep's curve that has ``needs`` (not the base model), the first
    in sweep order on a tie; None when no such row was validated."""
    top, top_value = None, None
    for row in curve:
        value = row.get("val_accuracy")
        if row.get("config") == "base" or _missing(row.get(needs)) or _missing(value):
            continue
        if top_value is None or value > top_value:
            top, top_value = row, value
    return top


def chosen_candidate(best: dict, curve: Iterable[dict]) -> tuple[float | None, float]:
    """(lambda, lr) of a sweep's chosen candidate (``best``: its update.json's "best"); where it chose the base
    model, of its best-validated candidate, the first in sweep order on a tie (``curve``: its curve.parquet's
    rows, in sweep order). lambda is None for a sweep without masks."""
    from cca.errors import CCAError

    top = best if best.get("config") != "base" and not _missing(best.get("lr")) else _best_validated(curve, "lr")
    if top is None:
        raise CCAError("the sweep validated no candidate besides the base model (check update.eval_steps)")
    lam = top.get("lambda")
    return (None if _missing(lam) else float(lam)), float(top["lr"])


def chosen_lambda(best: dict, curve: Iterable[dict]) -> float:
    """The lambda of a w/ mask update's chosen mask: that of its chosen candidate (``best``, its update.json's
    "best"); where it chose the base model, that of its best-validated candidate other than the base model,
    the first in sweep order on a tie (``curve``: its curve.parquet's rows, in sweep order)."""
    from cca.errors import CCAError

    top = best if not _missing(best.get("lambda")) else _best_validated(curve, "lambda")
    if top is None:
        raise CCAError("the w/ mask update validated no candidate besides the base model: no mask to copy the "
                       "size of (check update.eval_steps)")
    return float(top["lambda"])


def update_runs(model, cmap, examples, masks: list[tuple[float, dict]], config, validator, base_state,
                frozen: frozenset[str], store=None, base_value: float | None = None):
    """The targeted update's candidates: every (mask, lr) with ``masks`` [(lambda, selected)], else every lr
    of the all-parameter update, which trains every parameter not named in ``frozen``. Yields as ``choose``
    reads; the model is restored after each candidate (its row deltas detached, or ``base_state`` loaded).
    ``store`` (a ``cca.update.candidates.CandidateStore``): finished candidates are kept there and taken
    from there instead of being trained again. ``base_value``: the base model's validation; with
    ``config.stop_after_drop`` a candidate stops after a look that far below it."""
    from cca.circuits.mask_file import selection_indices
    from cca.errors import CCAError
    from cca.models.components import update_slices
    from cca.update.row_delta import attach, delta_tensors, detach
    from cca.update.targeted import train
    from cca.update.validation import host_copy, merged_writer

    candidates = [(lam, sel, lr) for lam, sel in masks for lr in config.lrs] if masks else \
        [(None, None, lr) for lr in config.lrs]
    floor = (base_value - config.stop_after_drop
             if config.stop_after_drop is not None and base_value is not None else None)
    for lam, sel, lr in candidates:
        label = (f"lambda={lam:g} " if lam is not None else "") + f"lr={lr:g}"
        done = store.get(label) if store is not None else None
        if done is not None:
            print(f"{label}: finished before this job was stopped (best val accuracy {done[0]['val_accuracy']})")
            yield done
            continue
        if sel is not None:
            slices = update_slices(cmap, selection_indices(sel), tuple(config.targets))
            if not slices:
                raise CCAError(f"mask of lambda {lam:g} selects no component that update.targets "
                               f"{config.targets} can update: add targets or lower dcm.lambdas")
            wrapped = attach(model, slices)
            params = [rd.delta for rd in wrapped.values()]
            snapshot = lambda w=wrapped: delta_tensors(w)  # noqa: E731
        else:
            wrapped = {}
            params = []
            for name, p in model.named_parameters():   # a tied weight is listed once, under its first name
                p.requires_grad_(name not in frozen)
                if name not in frozen:
                    params.append(p)
            snapshot = lambda: host_copy(model)  # noqa: E731
        plain = {}

        def evaluate(step, w=wrapped):
            r = validator(merged_writer(model, w))
            plain[step] = r["mean"]
            return r["template_mean"]

        curve, step, state = train(model, params, examples, lr, config.steps, config.eval_steps, evaluate, snapshot,
                                   micro_batch=config.micro_batch, loss=config.loss, max_step_norm=config.max_step_norm,
                                   progress=True, label=label, stop_below=floor)
        rows = [{"config": label, "lambda": lam, "lr": lr, **r, "val_accuracy_plain": plain.get(r["step"])}
                for r in curve]
        value = max((r["val_accuracy"] for r in curve if r["val_accuracy"] is not None), default=None)
        print(f"{label}: best val accuracy {value} at step {step}")
        record = {"config": label, "lambda": lam, "lr": lr, "step": step, "val_accuracy": value}
        if store is not None:
            store.put(label, record, rows, state)
        try:
            yield record, rows, state
        finally:   # also when the reader stops part way
            if wrapped:
                detach(model, wrapped)
            else:
                model.load_state_dict(base_state)


class LoRARuns:
    """The LoRA baseline's candidates, one per lr of ``config.lrs``: fresh adapters on ``model`` (seeded by
    ``seed``), trained, validated after each epoch. Iterate it for ``choose``; ``model`` is the base model
    again after each candidate (its adapters removed, never merged) and ``counts`` the (trainable, total)
    parameters of the last adapters."""

    def __init__(self, model, prompts, completions, config, validator, seed: int):
        self.model, self.prompts, self.completions = model, prompts, completions
        self.config, self.validator, self.seed = config, validator, seed
        self.counts = None

    def __iter__(self):
        import copy

        import torch

        from cca.update.lora import add_lora, train_lora, trainable_parameters

        for lr in self.config.lrs:
            label = f"lr={lr:g}"
            torch.manual_seed(self.seed)
            peft_model = add_lora(self.model, self.config)
            self.counts = trainable_parameters(peft_model)

            def write(directory, pm=peft_model):
                copy.deepcopy(pm).merge_and_unload().save_pretrained(directory)

            curve, (epoch, step), state = train_lora(peft_model, self.prompts, self.completions, self.config, lr,
                                             lambda e: self.validator(write)["template_mean"], seed=self.seed,
                                             progress=True, label=label)
            rows = [{"config": label, "lr": lr, **r} for r in curve]
            value = max(r["val_accuracy"] for r in curve if r["val_accuracy"] is not None)
            print(f"{label}: best val accuracy {value:.3f} at step {step} (epoch {epoch})")
            yield {"config": label, "lr": lr, "epoch": epoch, "step": step, "val_accuracy": value}, rows, state
            self.model = peft_model.unload()
