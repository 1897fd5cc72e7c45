"""``cca lora`` (workflow/rules/lora.smk): the LoRA baseline (PEFT) on CCA's training instances, lr sweep,
the best candidate chosen on validation."""
from __future__ import annotations

from dataclasses import dataclass

from cca.cli.common import add_paths, first_seed_choice, open_validator, torch_threads
from cca.errors import CCAError
from cca.settings import Settings, placement
from cca.tasks.config import TaskConfig
from cca.traces.config import GenerationConfig
from cca.update.config import LoRAConfig


@dataclass(frozen=True)
class LoRASettings(Settings):
    lora: LoRAConfig
    generation: GenerationConfig    # validation generates with it, in eval_dtype
    task: TaskConfig
    eval_dtype: str                 # update.eval_dtype
    device_map: str | None

    @classmethod
    def from_model(cls, s: dict) -> "LoRASettings":
        return cls.from_dict({"lora": s["lora"], "generation": s["generation"], "task": s["task_config"],
                              "eval_dtype": s["update"]["eval_dtype"], "device_map": placement(s, True)})


def lora_training_set(instances, split, accuracy, max_examples: int | None, seed: int):
    """The train split's instances of the templates below the accuracy threshold (CCA's train set),
    optionally a fixed random subset of ``max_examples``."""
    eligible = set(accuracy.loc[accuracy["train_eligible"], "template_id"])
    ids = set(split.loc[split["split"] == "train", "instance_id"])
    train = instances[instances["instance_id"].isin(ids) & instances["template_id"].isin(eligible)]
    train = train.reset_index(drop=True)
    if max_examples and len(train) > max_examples:
        train = train.sample(n=max_examples, random_state=seed).sort_index().reset_index(drop=True)
    return train


def lora(args) -> None:
    import time
    from pathlib import Path

    import pandas as pd
    import torch

    from cca.circuits.figures import validation_curves
    from cca.config import ROOT
    from cca.io import atomic_dir, read_parquet, write_json, write_parquet
    from cca.traces.build import prompt_texts, tokenize_prompts
    from cca.update.lora import add_lora, require_solutions, save_adapter, solution_completion
    from cca.update.sweep import LoRARuns, choose
    from cca.update.validation import load_trained_model

    torch_threads()
    st = LoRASettings.from_json(args.settings)
    cfg = st.lora
    choice = first_seed_choice(args)
    if choice is not None:
        cfg = cfg.replace(lrs=[choice[1]])
        print(f"training the first seed's choice ({args.sweep}): lr {choice[1]:g}")
    train = lora_training_set(read_parquet(args.instances), read_parquet(args.splits), read_parquet(args.accuracy),
                              cfg.max_examples, args.seed)
    if train.empty:
        raise CCAError(f"no training instances for LoRA: {args.accuracy} has no template below the accuracy "
                       "threshold with train instances (template_filter.max_base_accuracy, splits.train)")
    require_solutions(train)
    torch.manual_seed(args.seed)
    model, tokenizer = load_trained_model(args.checkpoint, st.generation, st.device_map)
    prompts = tokenize_prompts(tokenizer, prompt_texts(train, st.task, ROOT))
    completions = [tokenizer(solution_completion(t), add_special_tokens=False)["input_ids"]
                   for t in train["solution"]]
    outdir = Path(args.out).parent
    validator = open_validator(args, st.generation, st.eval_dtype, model, tokenizer)
    t0 = time.perf_counter()
    try:
        base = validator(None)
        print(f"base model: val accuracy {base['template_mean']:.3f} (mean per template)")
        base_row = {"config": "base", "lr": None, "epoch": 0, "step": 0, "loss": None,
                    "val_accuracy": base["template_mean"]}
        start = {"config": "base", "lr": None, "epoch": 0, "step": 0, "val_accuracy": base["template_mean"]}
        runs = LoRARuns(model, prompts, completions, cfg, validator, args.seed)
        rows, best, best_state = choose(start, runs, cfg.base_candidate)
        model = runs.model
    finally:
        validator.close()
    seconds = time.perf_counter() - t0
    curve_df = pd.DataFrame([base_row] + rows)
    write_parquet(curve_df, outdir / "curve.parquet")
    validation_curves(curve_df, outdir / "curve.png", "LoRA: validation accuracy")
    peft_model = add_lora(model, cfg)
    if best_state is not None:
        peft_model.load_state_dict(best_state, strict=False)
    with atomic_dir(outdir / "adapter") as tmp:
        save_adapter(peft_model, tmp)
    with atomic_dir(outdir / "merged") as tmp:
        (peft_model.merge_and_unload() if best_state is not None else peft_model.unload()).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    trainable, total = runs.counts
    summary = {"method": "lora", "seed": args.seed, "examples": len(train), "base_val_accuracy": base["template_mean"],
               "best": best, "chosen": "base" if best["config"] == "base" else "updated",
               "trainable_parameters": trainable, "total_parameters": total,
               "trainable_percent": 100.0 * trainable / total, "lrs": list(cfg.lrs), "epochs": cfg.epochs,
               "settings": {"r": cfg.r, "alpha": cfg.alpha, "dropout": cfg.dropout, "targets": cfg.targets,
                            "batch_size": cfg.batch_size, "warmup_steps": cfg.warmup_steps,
                            "weight_decay": cfg.weight_decay, "max_grad_norm": cfg.max_grad_norm,
                            "eval_every": cfg.eval_every},
               "sweep": {"from": str(args.sweep), "lr": choice[1]} if choice else "whole",
               "seconds": round(seconds, 1)}
    write_json(summary, args.out)   # last: the rule's main output marks completion
    print(f"lora: chose {best['config']} step {best['step']} (epoch {best['epoch']}; val {best['val_accuracy']:.3f}; base "
          f"{base['template_mean']:.3f}); {trainable:,} trainable parameters ({summary['trainable_percent']:.2f}%), "
          f"{seconds:.0f}s -> {outdir}")


def register(sub) -> None:
    s = sub.add_parser("lora", help="LoRA baseline (PEFT) on the train split, lr sweep, best by validation")
    add_paths(s, "--checkpoint", "--instances", "--splits", "--accuracy", "--greedy")
    s.add_argument("--settings", required=True, help="JSON of cca.cli.lora.LoRASettings")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--sweep", help="the first seed's lora/update.json: train its chosen lr only")
    s.add_argument("--sweep-curve", help="the first seed's lora/curve.parquet (with --sweep)")
    s.add_argument("--out", required=True, help="update.json; curve, adapter and merged checkpoint go next to it")
    s.set_defaults(run=lora)
