"""Stage 1b: Error-Localization datasets from (greedy, opposite) trace pairs.

One row per pair: the prefix (prompt + completion up to and including the intervention token),
the desired and undesired next token, the pivot position, and what the search cost.
"""
from __future__ import annotations

import time

import pandas as pd

from cca.localize.methods import get_method
from cca.traces.generation import Backend

COLUMNS = ["instance_id", "template_id", "method", "status", "prefix_ids", "prefix_text", "desired_id",
           "desired_text", "undesired_id", "undesired_text", "pivot_position", "greedy_correct",
           "opposite_correct", "completions"]


def pairs_table(greedy: pd.DataFrame, opposite: pd.DataFrame) -> pd.DataFrame:
    """Join found opposite traces with their greedy traces."""
    found = opposite[opposite["found"]]
    columns = ["instance_id", "prompt_ids", "completion_ids", "answer_value"]
    columns += ["answer_format"] if "answer_format" in greedy.columns else []
    return found.merge(greedy[columns], on="instance_id")


def localize(pairs: pd.DataFrame, method: str, tokenizer, backend: Backend | None, max_new_tokens: int,
             search: str, batch: int, bisect_points: int | None, progress: bool = False) -> pd.DataFrame:
    """Error-Localization rows for every pair with ``method`` (a name in cca.localize.methods.METHODS);
    ``progress``: a progress bar of the searches on stderr."""
    m = get_method(method)
    pivots = m.find(pairs, backend=backend, max_new_tokens=max_new_tokens, search=search, batch=batch,
                    bisect_points=bisect_points, progress=progress)
    rows = []
    for r in pairs.itertuples():
        p = pivots[r.instance_id]
        row = {"instance_id": r.instance_id, "template_id": r.template_id, "method": method,
               "greedy_correct": bool(r.greedy_correct), "opposite_correct": bool(r.opposite_correct)}
        if p is None:
            row.update(status=m.no_pivot)
        else:
            source = r.completion_ids if m.prefix_source == "greedy" else r.opposite_ids
            prefix = list(r.prompt_ids) + list(source[: p.position])
            row.update(status="ok", prefix_ids=prefix, prefix_text=tokenizer.decode(prefix),
                       desired_id=int(p.desired), desired_text=tokenizer.decode([p.desired]),
                       undesired_id=int(p.undesired), undesired_text=tokenizer.decode([p.undesired]),
                       pivot_position=int(p.position), completions=int(p.completions))
        rows.append(row)
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.astype({"desired_id": "Int64", "undesired_id": "Int64", "pivot_position": "Int64",
                      "completions": "Int64"})


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
