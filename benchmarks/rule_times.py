"""Wall time and peak memory of every rule of one model's run, from Snakemake's `benchmark:` files.

    python benchmarks/rule_times.py results/gemma-3-270m            # a Markdown table and the total
    python benchmarks/rule_times.py results/gemma-3-270m --csv t.csv

Each rule writes results/<model>/benchmarks/<job>.tsv (seconds, h:m:s, max_rss in MB, ...); a job run more
than once keeps the last run. The total is the sum of the jobs' wall times: Snakemake ran them one at a
time here (every model rule takes all cores), so it is the DAG's wall time less Snakemake's own overhead.
"""
from __future__ import annotations

import argparse
import platform
from pathlib import Path

import pandas as pd


def rule_times(results: Path) -> pd.DataFrame:
    rows = []
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        bench = pd.read_csv(tsv, sep="\t")
        last = bench.iloc[-1]
        job = tsv.relative_to(results / "benchmarks").with_suffix("").as_posix()   # math_prefix/mask_seed0
        rows.append({"job": job, "seconds": float(last["s"]), "max_rss_mb": float(last["max_rss"])})
    if not rows:
        raise SystemExit(f"no benchmark files under {results / 'benchmarks'}: run the workflow first")
    return pd.DataFrame(rows).sort_values("seconds", ascending=False, ignore_index=True)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="results/<model>")
    ap.add_argument("--csv", type=Path, help="also write the table as CSV")
    args = ap.parse_args()
    table = rule_times(args.results)
    if args.csv:
        table.to_csv(args.csv, index=False)
    print("| job | wall | peak RSS |\n| --- | --- | --- |")
    for r in table.itertuples():
        print(f"| {r.job} | {r.seconds / 60:.1f} min | {r.max_rss_mb / 1024:.1f} GiB |")
    print(f"\n{len(table)} jobs, {table.seconds.sum() / 60:.1f} min in all; CPU: {cpu_name()}")


if __name__ == "__main__":
    main()
