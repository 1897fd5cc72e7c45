"""``cca update`` (workflow/rules/update.smk): the targeted update (w/ mask) or the all-parameter update
(w/o mask) over the lr sweep, the best candidate chosen on validation."""
from __future__ import annotations

from dataclasses import dataclass

from cca.cli.common import add_paths, torch_threads
from cca.errors import CCAError
from cca.settings import Settings, placement
from cca.traces.config import GenerationConfig
from cca.update.config import UpdateConfig


@dataclass(frozen=True)
class UpdateSettings(Settings):
    update: UpdateConfig
    generation: GenerationConfig    # validation generates with it, in update.eval_dtype
    device_map: str | None

    @classmethod
    def from_model(cls, s: dict) -> "UpdateSettings":
        return cls.from_dict({"update": s["update"], "generation": s["generation"], "device_map": placement(s, True)})


def training_pairs(examples, max_examples: int | None, seed: int):
    """The pairs an update trains on: all, or a fixed random subset of ``max_examples``."""
    import random

    from cca.update.targeted import Examples

    n = len(examples)
    if not max_examples or n <= max_examples:
        return examples
    keep = sorted(random.Random(seed).sample(range(n), max_examples))
    return Examples([examples.prefixes[i] for i in keep], [examples.desired[i] for i in keep],
                    [examples.undesired[i] for i in keep])


def read_masks(paths: list[str]) -> list[tuple[float, dict, dict]]:
    """(lambda, selected, metadata) of every mask file; a mask that selects nothing is an error."""
    from cca.circuits.mask_file import load_mask

    masks = []
    for path in paths:
        selected, meta = load_mask(path)
        if not any(bool(v.any()) for v in selected.values()):
            raise CCAError(f"mask {path} selects no component: lower dcm.lambdas and re-run")
        masks.append((meta.get("lambda"), selected, meta))
    return masks


def update(args) -> None:
    import json
    import time
    from pathlib import Path

    import pandas as pd
    import torch
    from safetensors.torch import save_file

    from cca.circuits.figures import validation_curves
    from cca.io import atomic_dir, atomic_file, read_parquet, write_json, write_parquet
    from cca.models.components import component_map
    from cca.update.row_delta import load_delta, merged
    from cca.update.sweep import choose, update_runs
    from cca.update.targeted import Examples
    from cca.update.validation import Validator, host_copy, load_trained_model, validation_rows

    torch_threads()
    st = UpdateSettings.from_json(args.settings)
    u = st.update
    all_pairs = Examples.from_frame(read_parquet(args.dataset), source=str(args.dataset))
    ex = training_pairs(all_pairs, u.max_examples, args.seed)
    if len(ex) < len(all_pairs):
        print(f"training on a fixed random subset of {len(ex)} of {len(all_pairs)} pairs (update.max_examples)")
    masks = []
    if args.variant == "mask":
        if not args.masks:
            raise CCAError("the w/ mask update needs --masks (the DCM mask files of every lambda)")
        masks = read_masks(args.masks)
    torch.manual_seed(args.seed)
    model, tokenizer = load_trained_model(args.checkpoint, st.generation, st.device_map)
    cmap = component_map(model)
    base_state = None if args.variant == "mask" else host_copy(model)
    outdir = Path(args.out).parent
    val = validation_rows(read_parquet(args.greedy), read_parquet(args.splits), args.splits)
    validator = Validator(val, st.generation, u.eval_dtype, args.checkpoint, model, tokenizer, outdir)
    t0 = time.perf_counter()
    try:
        base = validator(None)
        print(f"base model: val accuracy {base['template_mean']:.3f} (mean per template), {base['mean']:.3f} plain"
              f" ({base.get('source', 'generated')})")
        base_row = {"config": "base", "lambda": None, "lr": None, "step": 0, "loss": None,
                    "val_accuracy": base["template_mean"], "val_accuracy_plain": base["mean"]}
        start = {"config": "base", "lambda": None, "lr": None, "step": 0, "val_accuracy": base["template_mean"]}
        runs = update_runs(model, cmap, ex, [(lam, sel) for lam, sel, _ in masks], u, validator, base_state)
        rows, best, best_state = choose(start, runs)
    finally:
        validator.close()
    seconds = time.perf_counter() - t0
    curve_df = pd.DataFrame([base_row] + rows)
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
    validation_curves(curve_df, outdir / "curve.png", f"{args.variant}: validation accuracy")
    if args.variant == "mask":
        tensors, axes = best_state if best_state is not None else ({}, {})
        with atomic_file(outdir / "delta.safetensors") as tmp:
            save_file(tensors, str(tmp), metadata={"axes": json.dumps(axes), "chosen": best["config"]})
    with atomic_dir(outdir / "merged") as tmp:
        with merged(model, wrapped):
            model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    summary = {"variant": args.variant, "seed": args.seed, "examples": len(ex), "pairs": len(all_pairs),
               "eval_dtype": validator.dtype, "base_val_accuracy": base["template_mean"],
               "base_val_source": base.get("source", "generated"),
               "best": best, "chosen": "base" if best["config"] == "base" else "updated",
               "trainable_delta_values": n_trainable, "seconds": round(seconds, 1),
               "lambdas": [m[0] for m in masks], "lrs": u.lrs, "steps": u.steps,
               "masks": {str(m[0]): {"selected": m[2].get("selected"), "percent": m[2].get("percent")} for m in masks}}
    write_json(summary, args.out)   # last: the rule's main output marks completion
    print(f"{args.variant}: chose {best['config']} step {best['step']} (val {best['val_accuracy']:.3f}; base "
          f"{base['template_mean']:.3f}), {seconds:.0f}s -> {outdir}")


def register(sub) -> None:
    s = sub.add_parser("update", help="targeted update (w/ mask) or all-parameter update (w/o mask), lr sweep")
    add_paths(s, "--checkpoint", "--dataset", "--greedy", "--splits")
    s.add_argument("--settings", required=True, help="JSON of cca.cli.update.UpdateSettings")
    s.add_argument("--variant", choices=["mask", "nomask"], required=True)
    s.add_argument("--masks", nargs="*", default=[], help="mask files, one per lambda (w/ mask)")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out", required=True, help="update.json; curve, delta and merged checkpoint go next to it")
    s.set_defaults(run=update)
