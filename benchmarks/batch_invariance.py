"""How often vLLM's greedy trace of a prompt changes with the batch it is decoded in (gemma-3-270m, CPU).

    python benchmarks/batch_invariance.py                  # 256 prompts of the greedy traces
    python benchmarks/batch_invariance.py --prompts 128 --dtype float32

The greedy_traces job decodes its prompts in shards of 64, all of a shard in one call. This script decodes
the same prompts (1) as the job did, in calls of 64 in the job's order, (2) in calls of 64 in a shuffled
order, (3) in calls of 7 (other batch sizes and neighbours, as a resumed job's last shard sees them) and
(4) one at a time, and counts the traces that differ from (1), with the first differing position.

Needs results/gemma-3-270m/checkpoint and results/gemma-3-270m/traces/greedy.parquet
(snakemake --cores all results/gemma-3-270m/traces/greedy.parquet).
"""
import argparse
import random

import pandas as pd


def first_difference(a, b) -> int | None:
    """The first index where two id sequences differ (their common length where one is a prefix), or None."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def decode(backend, prompts, spec, order, call_size):
    out = {}
    for start in range(0, len(order), call_size):
        idx = order[start:start + call_size]
        for i, completions in zip(idx, backend.generate([prompts[i] for i in idx], spec)):
            out[i] = completions[0].token_ids
    return [out[i] for i in range(len(prompts))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args()
    from cca.config import ROOT
    from cca.traces.generation import SamplingSpec, VLLMBackend

    greedy = pd.read_parquet(ROOT / "results/gemma-3-270m/traces/greedy.parquet").head(args.prompts)
    prompts = [[int(t) for t in p] for p in greedy["prompt_ids"]]
    backend = VLLMBackend(ROOT / "results/gemma-3-270m/checkpoint", dtype=args.dtype, max_model_len=2048)
    spec = SamplingSpec(max_new_tokens=args.max_new_tokens)
    try:
        n = len(prompts)
        shuffled = list(range(n))
        random.Random(0).shuffle(shuffled)
        runs = {"calls of 64, job order": decode(backend, prompts, spec, list(range(n)), 64),
                "calls of 64, shuffled": decode(backend, prompts, spec, shuffled, 64),
                "calls of 7": decode(backend, prompts, spec, list(range(n)), 7),
                "one at a time": decode(backend, prompts, spec, list(range(n)), 1)}
    finally:
        backend.close()
    reference = runs["calls of 64, job order"]
    stored = [tuple(int(t) for t in c) for c in greedy["completion_ids"]]
    same_as_job = sum(first_difference(a, b) is None for a, b in zip(reference, stored))
    print(f"{n} prompts, {args.dtype}, max_new_tokens {args.max_new_tokens}")
    print(f"calls of 64 in job order equal to the stored greedy traces: {same_as_job} of {n}")
    print("| decoding | traces differing from calls of 64 in job order | first differing positions |")
    print("| --- | --- | --- |")
    for name, run in runs.items():
        diffs = [d for a, b in zip(reference, run) if (d := first_difference(a, b)) is not None]
        print(f"| {name} | {len(diffs)} of {n} ({100 * len(diffs) / n:.1f}%) | {sorted(diffs)[:10]} |")


if __name__ == "__main__":
    main()
