"""``cca update`` (workflow/rules/update.smk): one update variant (cca.layout.VARIANTS) over the lr sweep, the
best candidate chosen on validation: the targeted update over the DCM masks (w/ mask) or over a random mask,
or the all-parameter update (w/o mask, or body only); and ``cca random-mask``, the random mask drawn as
large as the w/ mask update's chosen mask."""
from __future__ import annotations

from dataclasses import dataclass

from cca.cli.common import add_paths, first_seed_choice, open_validator, shard_fingerprint, torch_threads
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


def only_choice(masks: list, config: UpdateConfig, choice, variant, source: str):
    """The masks and update settings of a seed that trains the first seed's chosen (lambda, lr) only."""
    lam, lr = choice
    if variant.mask == "dcm":
        masks = [m for m in masks if m[0] is not None and float(m[0]) == lam]
        if not masks:
            raise CCAError(f"{source} chose lambda {lam:g}, which no given mask file has: give every lambda's mask")
    return masks, config.replace(lrs=[lr])


def whole_weights(model, examples, variant, micro_batch: int) -> tuple[frozenset[str], dict]:
    """For an update of whole weights: the parameters it leaves frozen (its variant's groups), and what its
    update.json records of them: the parameters it trains, and each group's share of the squared gradient at
    the base weights."""
    from cca.models.parameter_groups import gradient_shares, names_in, parameter_counts, parameter_groups
    from cca.update.targeted import squared_gradients

    groups = parameter_groups(model)
    frozen = names_in(groups, variant.frozen)
    trained, total = parameter_counts(model, frozen)
    shares = gradient_shares(squared_gradients(model, examples, micro_batch), groups)
    print("squared-gradient share at the base weights: " + ", ".join(f"{g} {v:.3f}" for g, v in shares.items()))
    return frozen, {"frozen_groups": list(variant.frozen), "frozen_parameters": sorted(frozen),
                    "trainable_parameters": trained, "total_parameters": total,
                    "trainable_percent": 100.0 * trained / total, "gradient_shares": shares,
                    "trained_gradient_share": sum(v for g, v in shares.items() if g not in variant.frozen)}


def update(args) -> None:
    import json
    import time
    from pathlib import Path

    import pandas as pd
    import torch
    from safetensors.torch import save_file

    from cca.circuits.figures import validation_curves
    from cca.io import atomic_dir, atomic_file, read_parquet, write_json, write_parquet
    from cca.layout import VARIANTS
    from cca.models.components import component_map
    from cca.update.row_delta import load_delta, merged
    from cca.update.candidates import CandidateStore
    from cca.update.sweep import choose, update_runs
    from cca.update.targeted import Examples
    from cca.update.validation import host_copy, load_trained_model

    torch_threads()
    st = UpdateSettings.from_json(args.settings)
    u = st.update
    variant = VARIANTS[args.variant]
    all_pairs = Examples.from_frame(read_parquet(args.dataset), source=str(args.dataset))
    ex = training_pairs(all_pairs, u.max_examples, args.seed)
    if len(ex) < len(all_pairs):
        print(f"training on a fixed random subset of {len(ex)} of {len(all_pairs)} pairs (update.max_examples)")
    masks = []
    if variant.mask:
        if not args.masks:
            raise CCAError(f"the {variant.label} update needs --masks (its mask files)")
        masks = read_masks(args.masks)
    choice = first_seed_choice(args)
    if choice is not None:
        masks, u = only_choice(masks, u, choice, variant, args.sweep)
        print(f"training the first seed's choice ({args.sweep}): " +
              (f"lambda {choice[0]:g}, " if choice[0] is not None else "") + f"lr {choice[1]:g}")
    torch.manual_seed(args.seed)
    model, tokenizer = load_trained_model(args.checkpoint, st.generation, st.device_map)
    cmap = component_map(model)
    frozen, whole = (frozenset(), {}) if variant.mask else whole_weights(model, ex, variant, u.micro_batch)
    base_state = None if variant.mask else host_copy(model)
    outdir = Path(args.out).parent
    # finished (lambda, lr) candidates survive a killed job; what they depend on is in the fingerprint
    store = CandidateStore(outdir / ".candidates", shard_fingerprint(
        {"settings": st.to_dict(), "variant": args.variant, "seed": args.seed}, args.checkpoint,
        [args.dataset, args.greedy, args.splits, *args.masks, *([args.sweep] if args.sweep else [])]))
    validator = open_validator(args, st.generation, u.eval_dtype, model, tokenizer)
    t0 = time.perf_counter()
    try:
        base = validator(None)
        print(f"base model: val accuracy {base['template_mean']:.3f} (mean per template), {base['mean']:.3f} plain"
              f" ({base.get('source', 'generated')})")
        base_row = {"config": "base", "lambda": None, "lr": None, "step": 0, "loss": None,
                    "val_accuracy": base["template_mean"], "val_accuracy_plain": base["mean"]}
        start = {"config": "base", "lambda": None, "lr": None, "step": 0, "val_accuracy": base["template_mean"]}
        runs = update_runs(model, cmap, ex, [(lam, sel) for lam, sel, _ in masks], u, validator, base_state, frozen,
                           store, base["template_mean"])
        rows, best, best_state = choose(start, runs, u.base_candidate)
    finally:
        validator.close()
    seconds = time.perf_counter() - t0
    curve_df = pd.DataFrame([base_row] + rows)
    # the chosen model: base weights plus the best delta (or the best full state without a mask)
    wrapped = {}
    for p in model.parameters():
        p.requires_grad_(False)
    if best_state is not None and variant.mask:
        tensors, axes = best_state
        wrapped = load_delta(model, tensors, axes)
    elif best_state is not None:
        model.load_state_dict(best_state)
    n_trainable = (sum(int(t.numel()) for k, t in best_state[0].items() if k.endswith(".delta"))
                   if best_state is not None and variant.mask else None)
    write_parquet(curve_df, outdir / "curve.parquet")
    validation_curves(curve_df, outdir / "curve.png", f"{variant.label}: validation accuracy")
    if variant.mask:
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
               "sweep": ({"from": str(args.sweep), "lambda": choice[0], "lr": choice[1]} if choice else "whole"),
               "masks": {str(m[0]): {k: m[2].get(k) for k in ("selected", "percent", "seed", "source")}
                         for m in masks}, **whole}
    write_json(summary, args.out)   # last: the rule's main output marks completion
    store.clear()
    print(f"{args.variant}: chose {best['config']} step {best['step']} (val {best['val_accuracy']:.3f}; base "
          f"{base['template_mean']:.3f}), {seconds:.0f}s -> {outdir}")


def mask_of_lambda(paths: list[str], lam: float) -> tuple[str, dict, dict]:
    """(path, selected, metadata) of the mask file among ``paths`` whose lambda is ``lam``."""
    for path, (file_lam, selected, meta) in zip(paths, read_masks(paths)):
        if file_lam is not None and float(file_lam) == lam:
            return path, selected, meta
    raise CCAError(f"no mask of lambda {lam:g} among {', '.join(map(str, paths))}: the w/ mask update chose a "
                   "lambda whose mask file is not given")


def random_mask_command(args) -> None:
    import json
    from pathlib import Path

    from cca.circuits.mask_file import save_mask
    from cca.circuits.random_mask import random_mask, random_mask_seed, site_counts
    from cca.io import read_parquet
    from cca.update.sweep import chosen_lambda

    summary = json.loads(Path(args.summary).read_text())
    curve = read_parquet(args.curve).to_dict("records")
    lam = chosen_lambda(summary["best"], curve)
    path, source, source_meta = mask_of_lambda(args.masks, lam)
    seed = random_mask_seed(args.seed)
    drawn = random_mask(source, seed)
    counts = site_counts(drawn)
    selected, total = sum(counts.values()), sum(int(v.numel()) for v in drawn.values())
    kinds = {}
    for name, n in counts.items():
        kind = name.rsplit(".", 1)[1]
        kinds[kind] = kinds.get(kind, 0) + n
    meta = {"lambda": lam, "random": True, "seed": seed, "run_seed": args.seed, "source": str(path),
            "source_lambda_chosen": summary["best"].get("lambda") is not None, "selected": selected, "total": total,
            "percent": 100.0 * selected / total, "selected_by_site": counts, "selected_by_kind": kinds,
            "model_type": source_meta.get("model_type")}
    save_mask(args.out, {k: v.float() for k, v in drawn.items()}, drawn, meta)
    print(f"random mask like lambda {lam:g} ({path}): {selected}/{total} components, seed {seed} -> {args.out}")


def register(sub) -> None:
    from cca.layout import VARIANTS

    s = sub.add_parser("update", help="one update variant (w/ mask, w/o mask, or a control) over the lr sweep")
    add_paths(s, "--checkpoint", "--dataset", "--greedy", "--splits")
    s.add_argument("--settings", required=True, help="JSON of cca.cli.update.UpdateSettings")
    s.add_argument("--variant", choices=list(VARIANTS), required=True)
    s.add_argument("--masks", nargs="*", default=[], help="mask files (a variant with a mask): one per lambda, or "
                   "the random mask")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--sweep", help="the first seed's update.json of this variant: train its chosen (lambda, lr) only")
    s.add_argument("--sweep-curve", help="the first seed's curve.parquet (with --sweep)")
    s.add_argument("--out", required=True, help="update.json; curve, delta and merged checkpoint go next to it")
    s.set_defaults(run=update)
    r = sub.add_parser("random-mask", help="a random mask with the w/ mask update's chosen mask's counts per "
                       "layer and kind")
    add_paths(r, "--summary", "--curve")
    r.add_argument("--masks", nargs="+", required=True, help="the DCM mask files of every lambda")
    r.add_argument("--seed", type=int, required=True, help="the run seed (the draw's seed is derived from it)")
    r.add_argument("--out", required=True, help="the random mask file (.safetensors)")
    r.set_defaults(run=random_mask_command)
