"""The exported PEFT adapter of a real run against the run's own merged checkpoint.

    python benchmarks/export_check.py results/gemma-3-270m/seed0/branching/mask

Exports the run's delta with `cca export` into a temporary folder, then compares, on the first prompts of the
run's Error-Localization dataset: the logits of the run's merged checkpoint (`<run>/merged`, what the workflow
evaluates), of plain PEFT's adapter on the base checkpoint (unmerged), and of `merge_and_unload()`; and the
merged weights bit for bit. Prints the largest absolute logit differences and the count of differing weights.
"""
import argparse
import json
import tempfile
from pathlib import Path

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", help="a masked update's folder (update.json, delta.safetensors, merged/)")
    ap.add_argument("--prompts", type=int, default=4)
    args = ap.parse_args()
    from peft import PeftModel

    from cca.cli import main as cca
    from cca.io import read_parquet
    from cca.models.registry import load_model

    torch.set_num_threads(2)
    run = Path(args.run)
    model_dir = run.parents[2]
    checkpoint = model_dir / "checkpoint"
    seed_dir = run.parents[1]
    dataset = seed_dir / f"error_localization_{run.parent.name}.parquet"
    prompts = [list(map(int, p)) for p in read_parquet(dataset)["prefix_ids"][: args.prompts]]
    with tempfile.TemporaryDirectory() as tmp:
        cca(["export", "--checkpoint", str(checkpoint), "--update-dir", str(run), "--out", tmp])
        ours, _ = load_model(run / "merged", dtype="float32")
        base, _ = load_model(checkpoint, dtype="float32")
        adapter = PeftModel.from_pretrained(base, Path(tmp) / "adapter")
        with torch.no_grad():
            diffs = {"adapter (unmerged)": 0.0, "merge_and_unload": 0.0}
            ref = [ours(torch.tensor([p])).logits[0, -1] for p in prompts]
            for p, r in zip(prompts, ref):
                diffs["adapter (unmerged)"] = max(diffs["adapter (unmerged)"],
                                                  float((adapter(torch.tensor([p])).logits[0, -1] - r).abs().max()))
            plain = adapter.merge_and_unload()
            for p, r in zip(prompts, ref):
                diffs["merge_and_unload"] = max(diffs["merge_and_unload"],
                                                float((plain(torch.tensor([p])).logits[0, -1] - r).abs().max()))
        theirs, mine = plain.state_dict(), ours.state_dict()
        differing = sum(k not in theirs or not torch.equal(theirs[k], mine[k]) for k in mine)
        size = sum(f.stat().st_size for f in (Path(tmp) / "adapter").iterdir())
    print(json.dumps({"run": str(run), "prompts": len(prompts), "max_abs_logit_diff": diffs,
                      "weights_differing": differing, "weights": len(mine), "adapter_bytes": size}, indent=1))


if __name__ == "__main__":
    main()
