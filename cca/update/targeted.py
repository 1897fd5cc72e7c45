"""Stage 3: the targeted update of the selected components, and its "w/o mask" ablation.

Loss = mean over the whole Error-Localization set of -(logit_desired - logit_undesired) at the
intervention position (full batch: the gradient of every step is exact over all examples, computed in
micro-batches with the shared prompt run once: ``cca.models.shared_prefix``). Plain SGD, W -= lr * grad, as the
reference code; with a mask only the fp32 row deltas of ``cca.update.row_delta`` are trainable, without one
every parameter is. Validation exact-match at the configured steps through the generation layer; the
best step wins, and the base model (step 0) is a candidate too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd
import torch

from cca.errors import CCAError
from cca.models.shared_prefix import PAIR_LOSSES, common_prefix_length, logit_difference_backward


@dataclass(frozen=True)
class Examples:
    prefixes: list[list[int]]
    desired: list[int]
    undesired: list[int]

    @classmethod
    def from_frame(cls, df: pd.DataFrame, source: str = "the Error-Localization dataset") -> "Examples":
        ok = df[df["status"] == "ok"] if "status" in df else df
        if ok.empty:
            raise CCAError(f"{source} has no pivots (0 usable rows of {len(df)}): there is nothing to train on; "
                           "sample more (sampling.num_samples), use more instances (instances.per_template) or "
                           "the other localization method")
        return cls([[int(t) for t in p] for p in ok["prefix_ids"]], [int(t) for t in ok["desired_id"]],
                   [int(t) for t in ok["undesired_id"]])

    def __len__(self):
        return len(self.prefixes)


def sgd_step(params: Sequence[torch.nn.Parameter], lr: float, max_norm: float | None = None) -> float:
    """W -= lr * grad; with ``max_norm`` the step (over all ``params`` together) is scaled down to at most that
    L2 norm. Returns the norm of the step taken."""
    grads = [p.grad for p in params if p.grad is not None]
    norm = lr * float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads))) if grads else 0.0
    scale = lr if max_norm is None or norm <= max_norm else lr * max_norm / norm
    with torch.no_grad():
        for p in params:
            if p.grad is not None:
                p.sub_(scale * p.grad.to(p.dtype))
    return norm if max_norm is None else min(norm, max_norm)


def train(model, params: Sequence[torch.nn.Parameter], examples: Examples, lr: float, steps: int,
          eval_steps: Sequence[int], evaluate: Callable[[int], float], snapshot: Callable[[], object],
          micro_batch: int, loss: str, max_step_norm: float | None, progress: bool = False, label: str = "",
          stop_below: float | None = None) -> tuple[list[dict], int, object]:
    """SGD on the pair loss (``cca.models.shared_prefix.PAIR_LOSSES``; the paper's is the logit difference);
    returns (curve rows, best step, snapshot at the best step).

    ``max_step_norm``: each step's L2 norm over all trainable values is capped (None: plain SGD).
    ``stop_below``: training stops after a look whose metric is below it (None: every step is trained).
    ``evaluate(step)`` gives the validation metric of the model as it is; ``snapshot()`` a copy of the
    trainable state to keep when a step is the best so far. Step 0 (the base model) is evaluated by the
    caller and is not part of the curve returned here. A curve row's ``loss`` is the pair loss's mean and
    ``logit_diff`` the mean logit difference, both before the step.
    """
    shared_len = common_prefix_length(examples.prefixes)
    rows, best_step, best_value, best_state = [], 0, None, None
    eval_at = set(eval_steps)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, desc=f"update {label}".strip())
    for step in range(1, steps + 1):
        for p in params:
            p.grad = None
        diffs = logit_difference_backward(model, examples.prefixes, examples.desired, examples.undesired,
                                          micro_batch=micro_batch, shared_len=shared_len, loss=loss)
        value_loss = float(PAIR_LOSSES[loss](diffs).mean())
        if not torch.isfinite(torch.tensor(value_loss)) or any(
                p.grad is not None and not torch.isfinite(p.grad).all() for p in params):
            raise CCAError(f"targeted update {label}: loss or gradient became {value_loss} at step {step}: "
                           "lower update.lrs")
        step_norm = sgd_step(params, lr, max_step_norm)
        row = {"step": step, "loss": value_loss, "logit_diff": float(diffs.mean()), "step_norm": step_norm,
               "val_accuracy": None}
        if step in eval_at:
            row["val_accuracy"] = value = evaluate(step)
            if best_value is None or value > best_value:
                best_step, best_value, best_state = step, value, snapshot()
        rows.append(row)
        if bar:
            bar.set_postfix(loss=f"{value_loss:.3f}", val=row["val_accuracy"])
            bar.update(1)
        if stop_below is not None and row["val_accuracy"] is not None and row["val_accuracy"] < stop_below:
            break
    if bar:
        bar.close()
    for p in params:
        p.grad = None
    return rows, best_step, best_state


def squared_gradients(model, examples: Examples, micro_batch: int) -> dict[str, float]:
    """{parameter name: sum of its squared gradient} of the update's loss over ``examples`` at the model's
    current weights, every parameter trainable for it (one full-batch forward/backward); the gradients are
    cleared and every parameter is left frozen."""
    params = dict(model.named_parameters())
    for p in params.values():
        p.requires_grad_(True)
        p.grad = None
    logit_difference_backward(model, examples.prefixes, examples.desired, examples.undesired,
                              micro_batch=micro_batch, shared_len=common_prefix_length(examples.prefixes))
    squares = {name: float(p.grad.double().pow(2).sum()) if p.grad is not None else 0.0
               for name, p in params.items()}
    for p in params.values():
        p.grad = None
        p.requires_grad_(False)
    return squares


def exact_match(templates: list[str], correct: list[bool]) -> dict:
    """Mean of per-template accuracies (the paper's metric), the plain mean, and the count; every row counts
    (a generation error is a wrong answer)."""
    df = pd.DataFrame({"template_id": list(templates), "correct": [float(c) for c in correct]})
    return {"template_mean": float(df.groupby("template_id")["correct"].mean().mean()),
            "mean": float(df["correct"].mean()), "n": len(df)}


def val_accuracy(backend, prompts: list[list[int]], gold: list, templates: list[str],
                 max_new_tokens: int) -> dict:
    """Greedy exact match of the model behind ``backend`` (see ``exact_match``)."""
    from cca.traces.generation import SamplingSpec
    from cca.traces.build import score

    outs = backend.generate(prompts, SamplingSpec(max_new_tokens=max_new_tokens))
    return exact_match(templates, [score(backend.tokenizer, [], o[0].token_ids, g)[1] for o, g in zip(outs, gold)])
