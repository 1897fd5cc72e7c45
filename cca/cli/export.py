"""``cca export``: a masked update's delta as a folder a user takes anywhere (no rule calls it).

``<out>/adapter``: a PEFT LoRA adapter that plain PEFT loads onto the base model (``cca.update.export``), and
``<out>/merged``: the base model with the delta merged in (transformers alone loads it); each with a README.md
model card in the Hugging Face hub's format, ready for ``huggingface-cli upload``.
"""
from __future__ import annotations

import shlex


def test_results(math_path: str, original_path: str) -> dict:
    """``{set: accuracy, original, diff, lo, hi, n}`` (points) of a run's math.parquet against the original's."""
    from cca.evaluate.math_accuracy import set_accuracy
    from cca.evaluate.table import math_delta_intervals
    from cca.io import read_parquet

    this, orig = read_parquet(math_path), read_parquet(original_path)
    intervals = math_delta_intervals({"original": orig, "this": this}).set_index("configuration").loc["this"]
    out = {}
    for name, rows in this.groupby("set", sort=False):
        a, b = set_accuracy(orig[orig["set"] == name]), set_accuracy(rows)
        out[name] = {"accuracy": 100 * b["template_mean"], "original": 100 * a["template_mean"],
                     "diff": 100 * (b["template_mean"] - a["template_mean"]), "lo": float(intervals[f"{name}_delta_lo"]),
                     "hi": float(intervals[f"{name}_delta_hi"]), "n": b["n"]}
    return out


def export(args) -> None:
    import json
    from pathlib import Path


    from cca.circuits.dcm import count_table
    from cca.circuits.mask_file import load_mask
    from cca.errors import CCAError
    from cca.io import atomic_dir
    from cca.models.components import component_map
    from cca.models.registry import MODEL_JSON, checkpoint_path, load_model
    from cca.update.export import lora_adapter, model_card
    from cca.update.row_delta import read_delta

    run = Path(args.update_dir)
    summary_path, delta_path = run / "update.json", run / "delta.safetensors"
    for p in (summary_path, delta_path):
        if not p.is_file():
            raise CCAError(f"{p} is missing: export a finished masked update (cca update --variant mask or random)")
    if bool(args.math) != bool(args.original_math):
        raise CCAError("the card's test results need both --math (this run's) and --original-math (the original's)")
    summary = json.loads(summary_path.read_text())
    tensors, axes = read_delta(delta_path)
    if not axes:
        raise CCAError(f"{delta_path} holds no delta: the update kept the base model, there is nothing to export")
    meta_path = Path(args.checkpoint) / MODEL_JSON
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    base_model = meta.get("repo_id") or meta.get("name") or str(args.checkpoint)
    model, tokenizer = load_model(args.checkpoint, dtype="float32")
    per_layer = count_table(component_map(model), load_mask(args.mask)[0]) if args.mask else None
    test = test_results(args.math, args.original_math) if args.math else None
    options = [("--checkpoint", args.checkpoint), ("--update-dir", args.update_dir), ("--mask", args.mask),
               ("--math", args.math), ("--original-math", args.original_math), ("--out", args.out)]
    command = "cca export " + " ".join(f"{k} {shlex.quote(str(v))}" for k, v in options if v)
    card = {"base_model": base_model, "summary": summary, "per_layer": per_layer, "test": test, "command": command,
            "base_weights": meta.get("note") if meta.get("source") == "embedded" else None}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out / "adapter") as tmp:
        peft_model = lora_adapter(model, tensors, axes)
        peft_model.save_pretrained(tmp)
        text = model_card(library="peft", **card)
        (tmp / "README.md").write_text(text)
    with atomic_dir(out / "merged") as tmp:
        plain = peft_model.merge_and_unload()
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        text = model_card(library="transformers", **card)
        (tmp / "README.md").write_text(text)
    print(f"exported {len(axes)} weights' deltas of {run} -> {out / 'adapter'} (PEFT), {out / 'merged'}; base "
          f"{checkpoint_path(args.checkpoint)}")


def register(sub) -> None:
    s = sub.add_parser("export", help="a masked update as a PEFT adapter and a merged model, each with a model card")
    s.add_argument("--checkpoint", required=True, help="the base model's prepared checkpoint (results/<model>/checkpoint)")
    s.add_argument("--update-dir", required=True, help="the update's folder (results/<model>/seed<s>/<method>/mask)")
    s.add_argument("--mask", help="the chosen mask file, for the card's heads and neurons per layer")
    s.add_argument("--math", help="the run's math.parquet, for the card's test results (with --original-math)")
    s.add_argument("--original-math", help="the original model's math.parquet (results/<model>/seed<s>/original)")
    s.add_argument("--out", required=True, help="folder to write adapter/ and merged/ into")
    s.set_defaults(run=export)
