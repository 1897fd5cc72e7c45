"""General evaluation (lm-eval) on gemma-3-270m: plain HFLM against logits only at the continuation.

    python benchmarks/general_eval_speed.py                              # the small profile's subsample, batch 1
    python benchmarks/general_eval_speed.py --batch-size 8 --skip-plain  # killed for memory on 23 GiB (docs/performance.md)

Both runs score the same questions in one process, each through a fresh HFLM over the same loaded model (the
continuation run goes first, so any warm-up favours plain HFLM). Prints wall time per run, the ratio, peak RSS
growth, and whether every score agrees. Needs results/gemma-3-270m/checkpoint
(snakemake --cores all results/gemma-3-270m/checkpoint).
"""
import argparse
import resource
import time

import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--skip-plain", action="store_true", help="time only the continuation-logits run")
    ap.add_argument("--benchmarks", default="mmlu_stem,mmlu_humanities,arc_challenge,truthfulqa_mc1,truthfulqa_mc2,"
                                            "triviaqa")
    args = ap.parse_args()
    from cca.config import ROOT, load_config, model_settings
    from cca.evaluate.general import evaluate, task_configs
    from cca.models.registry import load_model

    torch.set_num_threads(2)
    g = model_settings(load_config(), "gemma-3-270m")["general"]
    picked = set(args.benchmarks.split(","))
    questions = {k: v for k, v in g["questions"].items() if k in picked}
    configs = task_configs(ROOT / "resources", questions, seed=g.get("subsample_seed", 0))
    model, tok = load_model(ROOT / "results/gemma-3-270m/checkpoint", dtype="float32")
    runs = [("continuation logits", True)] + ([] if args.skip_plain else [("plain HFLM", False)])
    out = {}
    for name, flag in runs:
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        df = evaluate(model, tok, configs, batch_size=args.batch_size, continuation_logits=flag)
        dt = time.perf_counter() - t
        grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 2**20
        out[name] = (dt, df)
        print(f"{name:20s} batch {args.batch_size}: {dt / 60:.2f} min, {len(df)} questions, "
              f"peak RSS grew {grew:.2f} GiB (0 when an earlier run already peaked higher)", flush=True)
    if len(out) == 2:
        (a, da), (b, db) = out["continuation logits"], out["plain HFLM"]
        same = np.allclose(da["score"].to_numpy(), db["score"].to_numpy(), atol=1e-6)
        print(f"plain / continuation: {b / a:.2f}x; every score equal: {same}")
        for bench, part in da.groupby("benchmark", sort=False):
            a_s, b_s = part["score"].mean(), db.loc[part.index, "score"].mean()
            print(f"  {bench:16s} {100 * a_s:6.2f} {100 * b_s:6.2f}")


if __name__ == "__main__":
    main()
