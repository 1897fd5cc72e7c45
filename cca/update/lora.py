"""The LoRA baseline: PEFT LoRA fine-tuning on the correct solutions of the train split.

The paper compares CCA with LoRA (r 16, alpha 32, dropout 0.1 on q,k,v,o,gate,up,down; lr swept;
2 epochs; batch 32; cosine schedule with 5 warmup steps; best checkpoint by validation exact match).
Training data: the train split's instances (templates below the accuracy threshold, as for CCA),
each as (the same few-shot prompt the model is evaluated with, the gold solution written as the
exemplars' chain of thought). The loss is the mean token NLL of the solution.

The few-shot prompt is shared by every example; ``completion_nll_backward`` computes it once per
step (exact for the weights; LoRA dropout on the shared part draws one mask per step rather than
one per example, the one difference from a plain batched forward).
"""
from __future__ import annotations

import torch

from cca.errors import CCAError
from cca.update.config import LoRAConfig


def solution_completion(solution: str) -> str:
    """The target text after the prompt's 'Let's think step by step.': the exemplars' format."""
    from cca.tasks.prompting import gsm8k_solution_to_cot

    return " " + gsm8k_solution_to_cot(solution) + "\n"


def require_solutions(train) -> None:
    """LoRA trains on gold solutions: every training instance needs one (a records task may give bare answers)."""
    unsolved = train[train["solution"].fillna("").str.strip() == ""]
    if len(unsolved):
        raise CCAError(f"LoRA trains on gold solutions, but {len(unsolved)} of its {len(train)} training instances "
                       f"have none (e.g. {unsolved['instance_id'].iloc[0]}): give those records a solution that ends "
                       "in '#### <answer>' (docs/configuration.md: the LoRA baseline of every run needs them)")


def add_lora(model, s: LoRAConfig):
    """Wrap ``model`` with fresh LoRA adapters (B = 0: the wrapped model computes what the base does)."""
    from peft import LoraConfig, get_peft_model

    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in s.targets if t not in names]
    if missing:
        raise CCAError(f"lora.targets {missing} are not modules of this model (it has e.g. "
                       f"{sorted(n for n in names if n.endswith('proj'))}): fix lora.targets in config.yaml")
    cfg = LoraConfig(r=s.r, lora_alpha=s.alpha, lora_dropout=s.dropout, target_modules=list(s.targets),
                     task_type="CAUSAL_LM", bias="none")
    return get_peft_model(model, cfg)


def save_adapter(peft_model, directory) -> None:
    """PEFT's ``save_pretrained``, with ``adapter_config.json`` made reproducible: PEFT keeps
    ``target_modules`` as a set and writes it in hash order, which changes from process to process."""
    import json
    from pathlib import Path

    peft_model.save_pretrained(directory)
    path = Path(directory) / "adapter_config.json"
    cfg = json.loads(path.read_text())
    for key in ("target_modules", "modules_to_save", "exclude_modules"):
        if isinstance(cfg.get(key), list):
            cfg[key] = sorted(cfg[key])
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def trainable_parameters(peft_model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in peft_model.parameters())
    return int(trainable), int(total)


def adapter_state(peft_model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in peft_model.state_dict().items() if "lora_" in k}


def evaluation_steps(steps_per_epoch: int, epochs: int, every: int | None) -> set[int]:
    """The steps after which LoRA validates: every ``every`` steps and after the last (None: after each epoch)."""
    total = steps_per_epoch * epochs
    if every is None:
        return {steps_per_epoch * e for e in range(1, epochs + 1)}
    return set(range(every, total + 1, every)) | {total}


def train_lora(peft_model, prompts, completions, s: LoRAConfig, lr: float, evaluate, seed: int,
               progress: bool = False, label: str = ""):
    """Fine-tune the adapters with AdamW (``s.weight_decay``), gradients clipped to ``s.max_grad_norm``;
    ``evaluate(step)`` (validation accuracy) at ``evaluation_steps``.

    Returns (curve rows, (epoch, step) of the best validation, adapter state there).
    """
    from transformers import get_cosine_schedule_with_warmup

    from cca.models.shared_prefix import completion_nll_backward

    n = len(prompts)
    if n == 0:
        raise CCAError("LoRA baseline: no training examples")
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=s.weight_decay)
    steps_per_epoch = -(-n // s.batch_size)
    look_at = evaluation_steps(steps_per_epoch, s.epochs, s.eval_every)
    sched = get_cosine_schedule_with_warmup(opt, s.warmup_steps, steps_per_epoch * s.epochs)
    gen = torch.Generator().manual_seed(seed)
    base = peft_model.get_base_model()
    rows, best_at, best_value, best_state = [], (0, 0), None, None
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps_per_epoch * s.epochs, desc=f"lora {label}".strip())
    step = 0
    for epoch in range(1, s.epochs + 1):
        order = torch.randperm(n, generator=gen).tolist()
        for start in range(0, n, s.batch_size):
            idx = order[start:start + s.batch_size]
            peft_model.train()
            opt.zero_grad(set_to_none=True)
            nll = completion_nll_backward(base, [prompts[i] for i in idx], [completions[i] for i in idx],
                                          micro_batch=s.micro_batch)
            loss = float(nll.sum() / sum(len(completions[i]) for i in idx))
            if not torch.isfinite(torch.tensor(loss)):
                raise CCAError(f"LoRA {label}: loss became {loss} at step {step + 1}: lower lora.lrs")
            torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm)
            opt.step()
            sched.step()
            step += 1
            rows.append({"epoch": epoch, "step": step, "loss": loss, "lr_now": sched.get_last_lr()[0],
                         "val_accuracy": None})
            if bar:
                bar.set_postfix(loss=f"{loss:.3f}")
                bar.update(1)
            if step in look_at:
                peft_model.eval()
                value = evaluate(step)
                rows[-1]["val_accuracy"] = value
                if best_value is None or value > best_value:
                    best_at, best_value, best_state = (epoch, step), value, adapter_state(peft_model)
    if bar:
        bar.close()
    peft_model.eval()
    return rows, best_at, best_state
