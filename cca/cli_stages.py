"""Rule layer of stages 2 and 3 (``cca dcm``, ``cca update``): read artifacts, call the algorithms of
cca.circuits.dcm / cca.update.targeted, write artifacts atomically."""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from cca.errors import CCAError


def _examples(path):
    from cca.io import read_parquet
    from cca.update.targeted import Examples

    return Examples.from_frame(read_parquet(path), source=str(path))


def _torch_threads():
    import os

    import torch

    n = len(os.sched_getaffinity(0))
    torch.set_num_threads(max(1, n))


def cmd_dcm(args, settings: dict) -> None:
    import torch

    from cca.models.components import component_map
    from cca.circuits.dcm import DCMSettings, count_table, train_mask
    from cca.circuits.figures import heads_heatmap, neurons_bars
    from cca.io import write_parquet
    from cca.circuits.mask_file import save_mask
    from cca.models.registry import load_model

    _torch_threads()
    d = settings["dcm"]
    ex = _examples(args.dataset)
    model, _ = load_model(args.checkpoint, dtype="float32", device_map=settings.get("device_map"))
    cmap = component_map(model)
    cfg = DCMSettings(lam=args.lam, lr=d["lr"], epochs=d["epochs"], batch_size=d["batch_size"],
                      lr_step_size=d.get("lr_step_size", 5), lr_gamma=d.get("lr_gamma", 0.9),
                      early_stop_fraction=d.get("early_stop_fraction", 0.2), unselected=d.get("unselected", "ablate"),
                      seed=args.seed, backend=d.get("backend", "hooks"),
                      cache_budget_gib=d.get("cache_budget_gib", 8.0))
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    res = train_mask(model, cmap, ex.prefixes, ex.desired, ex.undesired, cfg, progress=True)
    seconds = time.perf_counter() - t0
    if res.n_selected == 0:
        raise CCAError(f"lambda {args.lam:g} selected no component (the sparsity penalty drove every mask below 0.5 "
                       f"in {res.epochs_run} epochs): lower dcm.lambdas in config.yaml")
    out = Path(args.out)
    stem = out.name.removesuffix(".safetensors")
    counts = count_table(cmap, res.selected)
    meta = {"lambda": args.lam, "selected": res.n_selected, "total": res.n_total,
            "percent": 100.0 * res.n_selected / res.n_total, "epochs_run": res.epochs_run,
            "stopped_early": res.stopped_early, "unselected": cfg.unselected, "examples": len(ex),
            "model_type": cmap.model_type, "seed": args.seed, "backend": cfg.backend, "seconds": round(seconds, 1),
            "selected_by_kind": counts.groupby("kind")["selected"].sum().to_dict()}
    import pandas as pd

    write_parquet(counts, out.with_name(f"{stem}.counts.parquet"))
    write_parquet(pd.DataFrame(res.history), out.with_name(f"{stem}.history.parquet"))
    title = f"lambda {args.lam:g}: {res.n_selected}/{res.n_total} components ({meta['percent']:.2f}%)"
    heads_heatmap(res.selected, cmap, out.with_name(f"{stem}.heads.png"), title)
    neurons_bars(counts, out.with_name(f"{stem}.neurons.png"), f"lambda {args.lam:g}")
    save_mask(out, res.values, res.selected, meta)   # last: the rule's main output marks completion
    print(f"lambda {args.lam:g}: {res.n_selected}/{res.n_total} components selected ({meta['percent']:.3f}%) "
          f"by kind {meta['selected_by_kind']}, {res.epochs_run} epochs"
          f"{' (early stop)' if res.stopped_early else ''}, {seconds:.0f}s -> {out}")


def load_trained_model(checkpoint, settings: dict):
    """The model an update or LoRA trains, on the CPU or spread by the model's device_map; the job's first
    tensor_parallel_size GPUs stay free for the vLLM engine that validates it."""
    from cca.models.registry import load_model

    gen = settings["generation"]
    engine = gen.get("tensor_parallel_size", 1) if gen["backend"] == "vllm" else 0
    return load_model(checkpoint, dtype="float32", device_map=settings.get("device_map"), skip_gpus=engine)


def host_copy(model) -> dict:
    """The model's weights copied to the host (a w/o mask update keeps its base and best weights there)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def traces_match_validation(settings: dict) -> bool:
    """Whether the greedy traces (``generation.dtype``) were generated in the dtype that validation and
    evaluation use (``update.eval_dtype``): then they are the original model's greedy evaluation."""
    return settings["generation"].get("dtype", "bfloat16") == settings["update"].get("eval_dtype", "float32")


class _Validator:
    """Validation accuracy of the model as it is now, through the generation layer."""

    def __init__(self, args, settings, model, tokenizer):
        from cca.io import read_parquet

        # Validation generates in update.eval_dtype (float32 by default): in bfloat16 an update smaller
        # than ~1/256 of a weight rounds away, and most lr * grad steps are that small.
        gen = {**settings["generation"], "dtype": settings["update"].get("eval_dtype", "float32")}
        greedy = read_parquet(args.greedy)
        split = read_parquet(args.splits)
        val = greedy.merge(split.loc[split["split"] == "val", ["instance_id"]], on="instance_id")
        if val.empty:
            raise CCAError(f"{args.splits} has no val instances: set splits.val above 0")
        self.prompts = [[int(t) for t in p] for p in val["prompt_ids"]]
        self.gold = [float(v) for v in val["answer_value"]]
        self.templates = list(val["template_id"])
        self.max_new_tokens = gen["max_new_tokens"]
        # The greedy traces are the base model's greedy completions of these prompts; generated in the
        # validation dtype (and the same max_new_tokens), they are its validation: no need to decode again.
        self.base_rows = val if traces_match_validation(settings) else None
        self.model, self.dtype = model, gen["dtype"]
        if gen["backend"] == "hf":
            from cca.traces.generation import HFBackend

            self.backend = HFBackend(model, tokenizer, seed=0)
            self.live, self.tmp = True, None
        else:
            from cca.traces.generation import open_backend

            self.backend = open_backend(args.checkpoint, seed=0, **gen)
            self.live = False
            outdir = Path(args.out).parent
            outdir.mkdir(parents=True, exist_ok=True)
            # a job of this rule killed outright (SIGKILL) left its weights here: no other job writes them
            for stale in outdir.glob(".weights.*"):
                shutil.rmtree(stale, ignore_errors=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=".weights.", dir=outdir))

    def push(self, write) -> None:
        """Make the backend generate with the model's current weights (vLLM: ``write`` them as a
        checkpoint directory, then reload it in place; Hugging Face: the live model already has them)."""
        if self.live:
            return
        write(self.tmp)
        self.backend.reload_weights(self.tmp)

    def __call__(self, write=None) -> dict:
        """Validation accuracy; ``write(dir)`` saves the weights to validate (default: the model as it is,
        which for ``write=None`` is the base model, read from the greedy traces where they match)."""
        from cca.update.targeted import exact_match, val_accuracy

        if write is None and self.base_rows is not None:
            rows = self.base_rows
            return {**exact_match(rows["template_id"], rows["correct"]), "source": "greedy traces"}
        self.push(write or self.model.save_pretrained)
        return val_accuracy(self.backend, self.prompts, self.gold, self.templates, self.max_new_tokens)

    def close(self):
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def merged_writer(model, wrapped):
    """A ``write(dir)`` saving the model with its row deltas merged (the model is left unmerged)."""
    from cca.update.row_delta import merged

    def write(directory):
        with merged(model, wrapped or {}):
            model.save_pretrained(directory)

    return write


def cmd_update(args, settings: dict) -> None:
    import pandas as pd
    import torch

    from cca.models.components import component_map, update_slices
    from cca.circuits.figures import validation_curves
    from cca.io import atomic_dir, write_json, write_parquet
    from cca.circuits.mask_file import load_mask, selection_indices
    from cca.update.row_delta import attach, delta_tensors, detach, load_delta, merged
    from cca.update.targeted import Examples, train

    _torch_threads()
    u = settings["update"]
    ex = _examples(args.dataset)
    n_pairs = len(ex)
    if u.get("max_examples") and n_pairs > u["max_examples"]:
        import random

        keep = sorted(random.Random(args.seed).sample(range(n_pairs), u["max_examples"]))
        ex = Examples([ex.prefixes[i] for i in keep], [ex.desired[i] for i in keep], [ex.undesired[i] for i in keep])
        print(f"training on a fixed random subset of {len(ex)} of {n_pairs} pairs (update.max_examples)")
    masks = []
    if args.variant == "mask":
        if not args.masks:
            raise CCAError("the w/ mask update needs --masks (the DCM mask files of every lambda)")
        for path in args.masks:
            selected, meta = load_mask(path)
            if not any(bool(v.any()) for v in selected.values()):
                raise CCAError(f"mask {path} selects no component: lower dcm.lambdas and re-run")
            masks.append((meta.get("lambda"), selected, meta))
    torch.manual_seed(args.seed)
    model, tokenizer = load_trained_model(args.checkpoint, settings)
    cmap = component_map(model)
    base_state = None if args.variant == "mask" else host_copy(model)
    validator = _Validator(args, settings, model, tokenizer)
    t0 = time.perf_counter()
    try:
        base = validator(None)
        print(f"base model: val accuracy {base['template_mean']:.3f} (mean per template), {base['mean']:.3f} plain"
              f" ({base.get('source', 'generated')})")
        rows = [{"config": "base", "lambda": None, "lr": None, "step": 0, "loss": None,
                 "val_accuracy": base["template_mean"], "val_accuracy_plain": base["mean"]}]
        best = {"config": "base", "lambda": None, "lr": None, "step": 0, "val_accuracy": base["template_mean"]}
        best_state = None
        configs = [(lam, sel, lr) for lam, sel, _ in masks for lr in u["lrs"]] if masks else \
            [(None, None, lr) for lr in u["lrs"]]
        for lam, sel, lr in configs:
            label = (f"lambda={lam:g} " if lam is not None else "") + f"lr={lr:g}"
            if sel is not None:
                slices = update_slices(cmap, selection_indices(sel), tuple(u.get("targets", ["q", "k", "v", "up"])))
                if not slices:
                    raise CCAError(f"mask of lambda {lam:g} selects no component that update.targets "
                                   f"{u.get('targets')} can update: add targets or lower dcm.lambdas")
                wrapped = attach(model, slices)
                params = [rd.delta for rd in wrapped.values()]
                snapshot = lambda w=wrapped: delta_tensors(w)  # noqa: E731
            else:
                wrapped = {}
                for p in model.parameters():
                    p.requires_grad_(True)
                params = [p for p in model.parameters()]
                snapshot = lambda: host_copy(model)  # noqa: E731
            plain = {}

            def evaluate(step, w=wrapped):
                r = validator(merged_writer(model, w))
                plain[step] = r["mean"]
                return r["template_mean"]

            curve, step, state = train(model, params, ex, lr, u["steps"], u["eval_steps"], evaluate, snapshot,
                                       micro_batch=u.get("micro_batch", 8), progress=True, label=label)
            for r in curve:
                rows.append({"config": label, "lambda": lam, "lr": lr, **r,
                             "val_accuracy_plain": plain.get(r["step"])})
            value = max((r["val_accuracy"] for r in curve if r["val_accuracy"] is not None), default=None)
            print(f"{label}: best val accuracy {value} at step {step}")
            if state is not None and value is not None and value > best["val_accuracy"]:
                best = {"config": label, "lambda": lam, "lr": lr, "step": step, "val_accuracy": value}
                best_state = state
            if wrapped:
                detach(model, wrapped)
            else:
                model.load_state_dict(base_state)
    finally:
        validator.close()
    seconds = time.perf_counter() - t0
    curve_df = pd.DataFrame(rows)
    out = Path(args.out)
    outdir = out.parent
    # the chosen model: base weights plus the best delta (or the best full state w/o mask)
    wrapped = {}
    for p in model.parameters():
        p.requires_grad_(False)
    if best_state is not None and args.variant == "mask":
        tensors, axes = best_state
        wrapped = load_delta(model, tensors, axes)
    elif best_state is not None:
        model.load_state_dict(best_state)
    n_trainable = (sum(int(t.numel()) for k, t in best_state[0].items() if k.endswith(".delta"))
                   if best_state is not None and args.variant == "mask" else None)
    write_parquet(curve_df, outdir / "curve.parquet")
    validation_curves(curve_df, outdir / "curve.png",
                      f"{args.variant}: validation accuracy")
    if args.variant == "mask":
        from safetensors.torch import save_file

        from cca.io import atomic_file

        tensors, axes = best_state if best_state is not None else ({}, {})
        with atomic_file(outdir / "delta.safetensors") as tmp:
            save_file(tensors, str(tmp), metadata={"axes": json.dumps(axes), "chosen": best["config"]})
    with atomic_dir(outdir / "merged") as tmp:
        with merged(model, wrapped):
            model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    summary = {"variant": args.variant, "seed": args.seed, "examples": len(ex), "pairs": n_pairs,
               "eval_dtype": validator.dtype, "base_val_accuracy": base["template_mean"],
               "base_val_source": base.get("source", "generated"),
               "best": best, "chosen": "base" if best["config"] == "base" else "updated",
               "trainable_delta_values": n_trainable, "seconds": round(seconds, 1),
               "lambdas": [m[0] for m in masks], "lrs": u["lrs"], "steps": u["steps"],
               "masks": {str(m[0]): {"selected": m[2].get("selected"), "percent": m[2].get("percent")} for m in masks}}
    write_json(summary, out)
    print(f"{args.variant}: chose {best['config']} step {best['step']} (val {best['val_accuracy']:.3f}; base "
          f"{base['template_mean']:.3f}), {seconds:.0f}s -> {outdir}")
