"""Branching localization: the reference approach against this project's, on the same pairs.

(a) reference: Hugging Face generate, one candidate prefix at a time (batch 1, no KV reuse), every
    k = 1, 2, ... until the first flip;
(b) exact scan on vLLM: all pairs' candidate prefixes batched per round (prefix cache shares their KV),
    prefixes on a known greedy path skipped; same first flip by construction;
(c) bisect on vLLM: O(log m) completions, finds *a* flip (``--bisect-points``: prefixes per round).

All three read the same stored (greedy, opposite) pairs and cut each branch at the same total length
(max_new_tokens), so their pivots are comparable; (a) and (b) should agree exactly up to numerical
ties between the two engines (reported).

    python benchmarks/branching_speed.py --model-dir results/gemma-3-270m --seed 0 --pairs 4
    python benchmarks/branching_speed.py --model-dir results/gemma-3-270m --seed 0 --pairs 32 --skip-reference \
        --bisect-points 1 3 7 --out benchmarks/results/branching_speed_32pairs.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd


class Counting:
    """Wraps a backend to count generate calls and generated tokens."""

    def __init__(self, backend):
        self.backend, self.tokenizer = backend, backend.tokenizer
        self.calls = self.tokens = 0

    def generate(self, prompts, spec):
        out = self.backend.generate(prompts, spec)
        self.calls += len(prompts)
        self.tokens += sum(len(c.token_ids) for o in out for c in o)
        return out


def reference_pivots(pairs: pd.DataFrame, model, tok, max_new_tokens: int):
    """One HF greedy generation per candidate prefix, in order, batch 1 (the reference code's loop)."""
    from cca.traces.generation import HFBackend, SamplingSpec
    from cca.traces.build import score

    hf = Counting(HFBackend(model, tok, batch_size=1))

    out = {}
    for r in pairs.itertuples():
        y = list(r.opposite_ids)
        pivot = None
        for k in range(1, len(y) + 1):
            if k == len(y):
                correct = bool(r.opposite_correct)
                comp = []
            else:
                [[c]] = hf.generate([list(r.prompt_ids) + y[:k]], SamplingSpec(max_new_tokens=max_new_tokens - k))
                comp = list(c.token_ids)
                _, correct = score(tok, y[:k], comp, r.answer_value)
            if correct != bool(r.greedy_correct):
                pivot = k - 1
                break
        out[r.instance_id] = pivot
    return out, hf


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default="results/gemma-3-270m")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--dtype", default="float32", help="vLLM dtype (float32 matches the HF reference numerics)")
    ap.add_argument("--bisect-points", type=int, nargs="+", default=[1],
                    help="(c) once per value: prefixes completed together per bisection round")
    ap.add_argument("--skip-reference", action="store_true",
                    help="only (b) and (c), compared with each other: for more pairs than (a) can afford")
    ap.add_argument("--out", default="benchmarks/results/branching_speed_4pairs.json")
    args = ap.parse_args()

    from cca.localize.dataset import localize, pairs_table
    from cca.traces.config import GenerationConfig
    from cca.traces.generation import open_backend
    from cca.models.registry import load_model

    d = Path(args.model_dir)
    greedy = pd.read_parquet(d / "traces/greedy.parquet")
    opposite = pd.read_parquet(d / f"seed{args.seed}/opposite_traces.parquet")
    pairs = pairs_table(greedy, opposite)
    # the pairs whose sampled trace leaves the greedy one earliest are the cheapest for the reference;
    # take an even spread of them instead of the first rows
    pairs = pairs.iloc[:: max(1, len(pairs) // args.pairs)].head(args.pairs).reset_index(drop=True)
    results = {"pairs": len(pairs), "max_new_tokens": args.max_new_tokens, "methods": {}}

    pivots = {}
    if not args.skip_reference:
        model, tok = load_model(d / "checkpoint", dtype="float32")
        t = time.perf_counter()
        ref, hf = reference_pivots(pairs, model, tok, args.max_new_tokens)
        wall = time.perf_counter() - t
        results["methods"]["a_reference_hf"] = {"wall_s": wall, "wall_per_pair_s": wall / len(pairs),
                                                "completions_per_pair": hf.calls / len(pairs),
                                                "tokens_per_s": hf.tokens / wall}
        pivots["a_reference_hf"] = ref
        del model

    gen = GenerationConfig(backend="vllm", dtype=args.dtype, max_new_tokens=args.max_new_tokens, max_model_len=4096,
                           max_num_seqs=None, tensor_parallel_size=1)
    backend = Counting(open_backend(d / "checkpoint", gen, seed=0))
    runs = [("b_exact_scan_vllm", "scan", 1)] + [
        ("c_bisect_vllm" if p == 1 else f"c_bisect{p}_vllm", "bisect", p) for p in args.bisect_points]
    for name, search, points in runs:
        backend.calls = backend.tokens = 0
        backend.backend.llm.reset_prefix_cache()   # no method starts with another's cached prefixes
        t = time.perf_counter()
        df = localize(pairs, "branching", backend.tokenizer, backend, args.max_new_tokens, search=search, batch=8,
                      bisect_points=points)
        wall = time.perf_counter() - t
        pivots[name] = {r.instance_id: (None if r.status != "ok" else int(r.pivot_position))
                        for r in df.itertuples()}
        results["methods"][name] = {"wall_s": wall, "wall_per_pair_s": wall / len(pairs),
                                    "completions_per_pair": backend.calls / len(pairs),
                                    "tokens_per_s": backend.tokens / wall if wall else 0.0}
    ids = list(pairs["instance_id"])
    m = results["methods"]
    against = "b_exact_scan_vllm" if args.skip_reference else "a_reference_hf"
    for name, _, _ in runs:
        if name == against:
            continue
        agree = sum(pivots[name][i] == pivots[against][i] for i in ids)
        m[name][f"pivot_agreement_with_{against}"] = f"{agree}/{len(ids)}"
        m[name][f"speedup_vs_{against}"] = m[against]["wall_s"] / m[name]["wall_s"]
    if not args.skip_reference:
        for name, search, _ in runs:
            if search == "bisect":
                m[name]["speedup_vs_b_exact_scan_vllm"] = m["b_exact_scan_vllm"]["wall_s"] / m[name]["wall_s"]
    results["pivots"] = {i: {k: pivots[k][i] for k in pivots} for i in ids}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    for k, v in results["methods"].items():
        print(k, json.dumps({kk: (round(vv, 2) if isinstance(vv, float) else vv) for kk, vv in v.items()}))


if __name__ == "__main__":
    main()
