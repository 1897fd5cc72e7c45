"""Rule layer of the evaluation stage (``cca evaluate math``): read artifacts, generate through the
shared generation layer, write artifacts atomically."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from cca.errors import CCAError


def _named_paths(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise CCAError(f"{flag} takes NAME=PATH, got '{item}'")
        out[name] = path
    return out


def chosen_base(update_json: str | None) -> bool:
    """Whether an update's selection kept the base model (its merged weights are the base weights)."""
    if not update_json:
        return False
    summary = json.loads(Path(update_json).read_text())
    return summary.get("chosen") == "base"


def cmd_evaluate_math(args, settings: dict) -> None:
    import pandas as pd

    from cca.config import ROOT
    from cca.evaluate.math_accuracy import math_summary, evaluation_instances
    from cca.io import read_parquet, write_json, write_parquet

    t0 = time.perf_counter()
    if args.reuse and chosen_base(args.update):
        # Greedy decoding of the same weights with the same engine settings: the original model's rows.
        df = read_parquet(args.reuse)
        source = f"reused: {args.update} chose the base model, so this is {args.reuse}"
    else:
        from cca.traces.generation import open_backend
        from cca.traces.build import greedy_traces, prompt_texts, tokenize_prompts

        from cca.cli_stages import traces_match_validation

        per_template = settings["splits"]["test"]
        sets = {"test": evaluation_instances(read_parquet(args.instances), read_parquet(args.splits), per_template)}
        for name, path in _named_paths(args.robustness, "--robustness").items():
            sets[name] = evaluation_instances(read_parquet(path), None, per_template)
        empty = [k for k, v in sets.items() if v.empty]
        if empty:
            raise CCAError(f"no test instances in set(s) {empty}: check splits.test in config.yaml")
        gen = {**settings["generation"], "dtype": settings["update"].get("eval_dtype", "float32")}
        frames, sources = [], []
        if args.greedy and traces_match_validation(settings):
            # The original model's greedy traces, generated in this dtype with these limits, hold its test
            # split's completions already.
            greedy = read_parquet(args.greedy).set_index("instance_id")
            ids = list(sets.pop("test")["instance_id"])
            missing = [i for i in ids if i not in greedy.index]
            if missing:
                raise CCAError(f"{args.greedy} lacks test instances {missing[:3]}...: re-run greedy_traces")
            frames.append(greedy.loc[ids].reset_index().assign(set="test"))
            sources.append(f"test from {args.greedy}")
        if sets:
            backend = open_backend(args.checkpoint, seed=0, device_map=settings.get("device_map"), **gen)
            for name, inst in sets.items():
                prompts = tokenize_prompts(backend.tokenizer, prompt_texts(inst, settings["task"], ROOT))
                rows = greedy_traces(backend, inst, prompts, gen["max_new_tokens"], backend.max_len)
                frames.append(rows.assign(set=name))
            sources.append(f"{', '.join(sets)} generated from {args.checkpoint} ({gen['backend']}, {gen['dtype']})")
        df = pd.concat(frames, ignore_index=True)[
            ["set", "instance_id", "template_id", "answer_value", "prediction", "correct", "completion_ids",
             "completion_text", "finish_reason", "error"]]
        source = "; ".join(sources)
    summary = {"sets": math_summary(df), "source": source, "seconds": round(time.perf_counter() - t0, 1)}
    write_json(summary, Path(args.out).with_suffix(".json"))
    write_parquet(df, args.out)   # last: the rule's main output marks completion
    print(", ".join(f"{k} {v['template_mean']:.3f} (n {v['n']})" for k, v in summary["sets"].items())
          + f"; {source} -> {args.out}")


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


def cmd_lora(args, settings: dict) -> None:
    import copy

    import pandas as pd
    import torch

    from cca.cli_stages import _torch_threads, _Validator, load_trained_model
    from cca.config import ROOT
    from cca.circuits.figures import validation_curves
    from cca.io import atomic_dir, read_parquet, write_json, write_parquet
    from cca.update.lora import LoRASettings, add_lora, save_adapter, solution_completion, train_lora, trainable_parameters
    from cca.traces.build import prompt_texts, tokenize_prompts

    _torch_threads()
    cfg = settings["lora"]
    s = LoRASettings(r=cfg["r"], alpha=cfg["alpha"], dropout=cfg["dropout"], targets=list(cfg["targets"]),
                     epochs=cfg["epochs"], batch_size=cfg["batch_size"], warmup_steps=cfg["warmup_steps"],
                     micro_batch=cfg.get("micro_batch", 8))
    train = lora_training_set(read_parquet(args.instances), read_parquet(args.splits), read_parquet(args.accuracy),
                              cfg.get("max_examples"), args.seed)
    if train.empty:
        raise CCAError(f"no training instances for LoRA: {args.accuracy} has no template below the accuracy "
                       "threshold with train instances (template_filter.max_base_accuracy, splits.train)")
    torch.manual_seed(args.seed)
    model, tokenizer = load_trained_model(args.checkpoint, settings)
    prompts = tokenize_prompts(tokenizer, prompt_texts(train, settings["task"], ROOT))
    completions = [tokenizer(solution_completion(t), add_special_tokens=False)["input_ids"]
                   for t in train["solution"]]
    validator = _Validator(args, settings, model, tokenizer)
    t0 = time.perf_counter()
    rows, best, best_state, counts = [], None, None, None
    try:
        base = validator(None)
        print(f"base model: val accuracy {base['template_mean']:.3f} (mean per template)")
        rows.append({"config": "base", "lr": None, "epoch": 0, "step": 0, "loss": None,
                     "val_accuracy": base["template_mean"]})
        best = {"config": "base", "lr": None, "epoch": 0, "val_accuracy": base["template_mean"]}
        for lr in cfg["lrs"]:
            label = f"lr={lr:g}"
            torch.manual_seed(args.seed)
            peft_model = add_lora(model, s)
            counts = trainable_parameters(peft_model)

            def write(directory, pm=peft_model):
                copy.deepcopy(pm).merge_and_unload().save_pretrained(directory)

            curve, epoch, state = train_lora(peft_model, prompts, completions, s, lr,
                                             lambda e: validator(write)["template_mean"], seed=args.seed,
                                             progress=True, label=label)
            rows += [{"config": label, "lr": lr, **r} for r in curve]
            value = max(r["val_accuracy"] for r in curve if r["val_accuracy"] is not None)
            print(f"{label}: best val accuracy {value:.3f} at epoch {epoch}")
            if value > best["val_accuracy"]:
                best = {"config": label, "lr": lr, "epoch": epoch, "val_accuracy": value}
                best_state = state
            model = peft_model.unload()   # the base model, adapters removed (never merged)
    finally:
        validator.close()
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    outdir = out.parent
    curve_df = pd.DataFrame(rows)
    write_parquet(curve_df, outdir / "curve.parquet")
    validation_curves(curve_df, outdir / "curve.png", "LoRA: validation accuracy")
    peft_model = add_lora(model, s)
    if best_state is not None:
        peft_model.load_state_dict(best_state, strict=False)
    with atomic_dir(outdir / "adapter") as tmp:
        save_adapter(peft_model, tmp)
    with atomic_dir(outdir / "merged") as tmp:
        (peft_model.merge_and_unload() if best_state is not None else peft_model.unload()).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    trainable, total = counts
    summary = {"method": "lora", "seed": args.seed, "examples": len(train), "base_val_accuracy": base["template_mean"],
               "best": best, "chosen": "base" if best["config"] == "base" else "updated",
               "trainable_parameters": trainable, "total_parameters": total,
               "trainable_percent": 100.0 * trainable / total, "lrs": list(cfg["lrs"]), "epochs": s.epochs,
               "settings": {"r": s.r, "alpha": s.alpha, "dropout": s.dropout, "targets": s.targets,
                            "batch_size": s.batch_size, "warmup_steps": s.warmup_steps},
               "seconds": round(seconds, 1)}
    write_json(summary, out)   # last: the rule's main output marks completion
    print(f"lora: chose {best['config']} epoch {best['epoch']} (val {best['val_accuracy']:.3f}; base "
          f"{base['template_mean']:.3f}); {trainable:,} trainable parameters ({summary['trainable_percent']:.2f}%), "
          f"{seconds:.0f}s -> {outdir}")


def cmd_evaluate_general(args, settings: dict) -> None:
    import shutil

    from cca.config import ROOT
    from cca.io import atomic_file, read_parquet, write_parquet

    g = settings.get("general")
    if not g:
        raise CCAError("the model's profile has no general section: add general.questions to config.yaml")
    t0 = time.perf_counter()
    if args.reuse and chosen_base(args.update):
        df = read_parquet(args.reuse)
        with atomic_file(args.out) as tmp:
            shutil.copyfile(args.reuse, tmp)
        source = f"reused: {args.update} chose the base model"
    else:
        from cca.cli_stages import _torch_threads
        from cca.evaluate.general import evaluate, task_configs
        from cca.models.registry import load_model

        _torch_threads()
        data_dir = Path(g.get("data_dir", "resources"))
        data_dir = data_dir if data_dir.is_absolute() else ROOT / data_dir
        configs = task_configs(data_dir, g["questions"], seed=g.get("subsample_seed", 0),
                               triviaqa_shots=g.get("triviaqa_shots", 5))
        model, tokenizer = load_model(args.checkpoint, dtype="float32", device_map=settings.get("device_map"))
        df = evaluate(model, tokenizer, configs, batch_size=g.get("batch_size", 8))
        write_parquet(df, args.out)
        source = f"lm-evaluation-harness on {args.checkpoint}"
    means = df.groupby("benchmark", sort=False)["score"].agg(["mean", "size"])
    print(", ".join(f"{b} {100 * r['mean']:.1f} (n {int(r['size'])})" for b, r in means.iterrows())
          + f"; {source}, {time.perf_counter() - t0:.0f}s -> {args.out}")


# Where each configuration's artifacts live under results/<model>/ (the rules write them there).
def run_dir(configuration: str, seed: int) -> str:
    if configuration == "original":
        return f"seed{seed}/original"
    if configuration == "lora":
        return f"seed{seed}/lora"
    _, method, variant = configuration.split("-")
    return f"seed{seed}/{method}/{variant}"


def configurations(methods) -> list[str]:
    return ["original"] + [f"cca-{m}-{v}" for m in methods for v in ("mask", "nomask")] + ["lora"]


def general_configurations(settings: dict) -> list[str]:
    """The configurations that get the general evaluation: general.configurations (absent: all), always
    with the original (every difference is taken against it), in table order."""
    confs = configurations(settings["localization"]["methods"])
    picked = set((settings.get("general") or {}).get("configurations") or confs) | {"original"}
    return [c for c in confs if c in picked]


def general_seeds(settings: dict) -> list[int]:
    g = settings.get("general") or {}
    return [s for s in g.get("seeds", settings["seeds"][:1]) if s in settings["seeds"]] if g else []


def _component_percent(update: dict, configuration: str) -> float:
    if configuration.endswith("nomask"):
        return 100.0
    if configuration == "lora":
        return float(update["trainable_percent"])
    masks = update.get("masks") or {}
    lam = update.get("best", {}).get("lambda")
    if lam is not None and str(lam) in masks:
        return float(masks[str(lam)]["percent"])
    return float(np.mean([m["percent"] for m in masks.values()])) if masks else 0.0


def cmd_table(args, settings: dict) -> None:
    import pandas as pd

    from cca.io import atomic_file, read_parquet
    from cca.evaluate.table import general_columns, math_delta_intervals, results_table, run_record

    root = Path(args.results)
    confs = configurations(settings["localization"]["methods"])
    records = []
    for conf in confs:
        for seed in settings["seeds"]:
            d = root / run_dir(conf, seed)
            math = json.loads((d / "math.json").read_text())
            update = None if conf == "original" else json.loads((d / "update.json").read_text())
            size = 0 if update is None else int(update.get("pairs", update.get("examples", 0)))
            pct = 0.0 if update is None else _component_percent(update, conf)
            records.append(run_record(conf, seed, math, update, size, pct))
    cols = ["set", "instance_id", "template_id", "correct"]
    items = {conf: pd.concat([read_parquet(root / run_dir(conf, s) / "math.parquet")[cols].assign(seed=s)
                              for s in settings["seeds"]], ignore_index=True) for conf in confs}
    iters = (settings.get("general") or {}).get("bootstrap_iters", 10_000)
    intervals = math_delta_intervals(items, iters=iters)
    general = None
    gseeds = general_seeds(settings)
    if gseeds:
        scores = {}
        for conf in general_configurations(settings):
            frames = [read_parquet(root / run_dir(conf, s) / "general.parquet").assign(
                item=lambda f, s=s: f"seed{s}/" + f["item"].astype(str)) for s in gseeds]
            scores[conf] = pd.concat(frames, ignore_index=True)
        general = general_columns(scores, iters=iters)
    table = results_table(records, general, intervals)
    with atomic_file(args.out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    if args.report:
        from cca.evaluate.report import render_report

        text = render_report(args.model, table, settings, root, gseeds)
        with atomic_file(args.report) as tmp:
            Path(tmp).write_text(text)
    print(table[["configuration", "seeds", "percent_components", "test_mean", "test_delta"]].to_string(index=False))
    print(f"-> {args.out}" + (f", {args.report}" if args.report else ""))
