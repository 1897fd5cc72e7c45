"""Stage 1b: Error-Localization datasets from (greedy, opposite) trace pairs.

One row per pair: the prefix (prompt + completion up to and including the intervention token),
the desired and undesired next token, the pivot position, and what the search cost.
"""
from __future__ import annotations

import time

import pandas as pd

from cca.traces.generation import Backend, SamplingSpec
from cca.localize.pivots import branching_bisect, branching_scan, drive_searches, prefix_pivot
from cca.traces.build import score, truncate_completion_ids

COLUMNS = ["instance_id", "template_id", "method", "status", "prefix_ids", "prefix_text", "desired_id",
           "desired_text", "undesired_id", "undesired_text", "pivot_position", "greedy_correct",
           "opposite_correct", "completions"]


def pairs_table(greedy: pd.DataFrame, opposite: pd.DataFrame) -> pd.DataFrame:
    """Join found opposite traces with their greedy traces."""
    found = opposite[opposite["found"]]
    return found.merge(greedy[["instance_id", "prompt_ids", "completion_ids", "answer_value"]], on="instance_id")


def localize(pairs: pd.DataFrame, method: str, tokenizer, backend: Backend | None = None,
             max_new_tokens: int = 512, search: str = "scan", batch: int = 8, bisect_points: int = 1,
             progress: bool = False) -> pd.DataFrame:
    """Error-Localization rows for every pair with ``method`` ('prefix' or 'branching'); ``progress``:
    a progress bar of the branching searches (pairs whose search has ended) on stderr."""
    if method == "prefix":
        pivots = {r.instance_id: prefix_pivot(tuple(r.completion_ids), tuple(r.opposite_ids), r.greedy_correct)
                  for r in pairs.itertuples()}
    elif method == "branching":
        pivots = branching_pivots(pairs, backend, max_new_tokens, search, batch, bisect_points, progress)
    else:
        raise ValueError(f"unknown localization method '{method}': use prefix or branching")
    rows = []
    for r in pairs.itertuples():
        p = pivots[r.instance_id]
        row = {"instance_id": r.instance_id, "template_id": r.template_id, "method": method,
               "greedy_correct": bool(r.greedy_correct), "opposite_correct": bool(r.opposite_correct)}
        if p is None:
            row.update(status="no_difference" if method == "prefix" else "no_flip")
        else:
            # prefix method: the traces agree up to the pivot; branching: the prefix is the sampled trace's
            source = r.completion_ids if method == "prefix" else r.opposite_ids
            prefix = list(r.prompt_ids) + list(source[: p.position])
            row.update(status="ok", prefix_ids=prefix, prefix_text=tokenizer.decode(prefix),
                       desired_id=int(p.desired), desired_text=tokenizer.decode([p.desired]),
                       undesired_id=int(p.undesired), undesired_text=tokenizer.decode([p.undesired]),
                       pivot_position=int(p.position), completions=int(p.completions))
        rows.append(row)
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.astype({"desired_id": "Int64", "undesired_id": "Int64", "pivot_position": "Int64",
                      "completions": "Int64"})


def branching_pivots(pairs: pd.DataFrame, backend: Backend, max_new_tokens: int, search: str = "scan",
                     batch: int = 8, bisect_points: int = 1, progress: bool = False) -> dict:
    """Run every pair's branching search together; each round is one engine call over all pairs."""
    by_id = {r.instance_id: r for r in pairs.itertuples()}
    if not by_id:
        return {}
    make = {"scan": lambda r: branching_scan(tuple(r.completion_ids), r.greedy_correct, tuple(r.opposite_ids),
                                             batch=batch),
            "bisect": lambda r: branching_bisect(tuple(r.completion_ids), r.greedy_correct,
                                                 tuple(r.opposite_ids), points=bisect_points)}[search]
    tok = backend.tokenizer

    def complete_many(requests):
        prompts, budgets = [], []
        for key, k in requests:
            r = by_id[key]
            prompts.append(list(r.prompt_ids) + list(r.opposite_ids[:k]))
            budgets.append(max(1, max_new_tokens - k))
        # One greedy call with the largest budget, each result cut to its own budget: exact for greedy.
        outs = backend.generate(prompts, SamplingSpec(max_new_tokens=max(budgets)))
        answers = {}
        for (key, k), out, b in zip(requests, outs, budgets):
            c = truncate_completion_ids(out[0], b, tok)
            r = by_id[key]
            _, ok = score(tok, list(r.opposite_ids[:k]), c.token_ids, r.answer_value)
            answers[(key, k)] = (tuple(c.token_ids), ok)
        return answers

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(by_id), desc="branching search", unit="pair")
    try:
        return drive_searches({i: make(r) for i, r in by_id.items()}, complete_many,
                              finished=(lambda: bar.update(1)) if bar else None)
    finally:
        if bar:
            bar.close()


def summary(n_targets: int, opposite: pd.DataFrame, datasets: dict[str, pd.DataFrame],
            seconds: dict[str, float]) -> dict:
    """Counts for the localization summary artifact."""
    out = {"train_instances": int(n_targets), "pairs_found": int(opposite["found"].sum()),
           "no_opposite_trace": int((~opposite["found"]).sum()),
           "generation_errors": int(opposite["error"].notna().sum()), "methods": {}}
    for method, df in datasets.items():
        ok = df[df["status"] == "ok"]
        out["methods"][method] = {
            "pivots_found": int(len(ok)), "no_pivot": int((df["status"] != "ok").sum()),
            "mean_completions_per_pair": float(ok["completions"].mean()) if len(ok) else 0.0,
            "mean_pivot_position": float(ok["pivot_position"].mean()) if len(ok) else None,
            "seconds": round(seconds.get(method, 0.0), 2)}
    return out


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t
