"""The configurations of a run evaluated so far, against the original and the w/ mask against its random mask.

    python benchmarks/compare_evaluated.py results/gemma-3-270m
    python benchmarks/compare_evaluated.py results/gemma-3-270m --set test --iters 10000

For a run whose table cannot be built yet (some configurations not trained, or a narrowed study: one method,
one seed), this reads every seed<S>/<run>/math.parquet there is and prints, per configuration: the seeds, the
mean per-template accuracy (the table's metric), its delta to the original in points with the paired bootstrap
95% interval over (seed, question), and the chosen (lambda, lr, step) and mask size of an update; then, per
method with both, the w/ mask minus the random-mask accuracy with its interval. The statistics are those of
the table (cca.evaluate.table.math_delta_intervals, cca.evaluate.study.versus_random).
"""
import argparse
import json
from pathlib import Path

import pandas as pd


def evaluated(root: Path) -> dict[str, pd.DataFrame]:
    """{configuration: its per-question rows over every seed that has them}."""
    from cca.layout import all_configurations, run_dir

    items = {}
    for conf in all_configurations():
        paths = [root / run_dir(conf, seed) / "math.parquet" for seed in seeds_of(root)]
        frames = [pd.read_parquet(p).assign(seed=seed) for seed, p in zip(seeds_of(root), paths) if p.is_file()]
        if frames:
            items[conf] = pd.concat(frames, ignore_index=True)
    return items


def seeds_of(root: Path) -> list[int]:
    return sorted(int(p.name.removeprefix("seed")) for p in root.glob("seed*") if p.name[4:].isdigit())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path, help="results/<model>")
    ap.add_argument("--set", default="test", dest="set_name")
    ap.add_argument("--iters", type=int, default=10_000)
    args = ap.parse_args()
    from cca.evaluate.study import versus_random
    from cca.evaluate.table import math_delta_intervals
    from cca.layout import run_dir

    items = evaluated(args.root)
    if "original" not in items:
        raise SystemExit(f"{args.root}: no seed<S>/original/math.parquet yet")
    # every configuration on the seeds that all of them, the original included, have been evaluated on
    common = set.intersection(*(set(df["seed"].unique()) for df in items.values()))
    items = {c: df[df["seed"].isin(common)] for c, df in items.items()}
    orig = items["original"]
    items = {c: df for c, df in items.items()
             if df.set_index(["seed", "set", "instance_id"]).sort_index().index.equals(
                 orig.set_index(["seed", "set", "instance_id"]).sort_index().index)}
    intervals = math_delta_intervals(items, iters=args.iters).set_index("configuration")

    def accuracy(df):
        part = df[df["set"] == args.set_name]
        return part.groupby(["seed", "template_id"])["correct"].mean().groupby("seed").mean()

    rows, means = [], {}
    for conf, df in items.items():
        acc = accuracy(df)
        means[conf] = float(acc.mean())
        update = {}
        for seed in sorted(common):
            path = args.root / run_dir(conf, seed) / "update.json"
            if path.is_file():
                update[seed] = json.loads(path.read_text()).get("best", {})
        lo, hi = intervals.loc[conf, f"{args.set_name}_delta_lo"], intervals.loc[conf, f"{args.set_name}_delta_hi"]
        rows.append({"configuration": conf, "seeds": len(acc), f"{args.set_name} mean": round(means[conf], 4),
                     f"{args.set_name} std": round(float(acc.std(ddof=0)), 4),
                     "delta (points)": round(100 * (means[conf] - means["original"]), 1),
                     "95% interval": f"[{lo:+.1f}, {hi:+.1f}]",
                     "chosen": "; ".join(f"lambda={b.get('lambda')} lr={b.get('lr')} step={b.get('step')}"
                                         for b in update.values()) or "-"})
    print(f"{args.root}: seeds {sorted(int(s) for s in common)}, set {args.set_name}, "
          f"{orig[(orig['set'] == args.set_name) & (orig['seed'] == min(common))].shape[0]} questions per seed")
    print(pd.DataFrame(rows).to_markdown(index=False))
    table = pd.DataFrame({"configuration": list(means), f"{args.set_name}_mean": list(means.values())})
    methods = sorted({c.split("-")[1] for c in items if c.startswith("cca-")})
    for method, r in versus_random(items, table, methods, args.iters, args.set_name).items():
        print(f"{method}: w/ mask minus random mask {r['diff']:+.1f} points [{r['lo']:+.1f}, {r['hi']:+.1f}]")


if __name__ == "__main__":
    main()
