"""The localization methods: each finds at most one pivot per (greedy, opposite) trace pair.

``METHODS`` is the one list of methods. The config schema's enum for ``localization.methods``, the
workflow's ``method`` wildcard, the ``cca localize --method`` choices, the results table's
configurations and the report's labels are all derived from it. A new method is a ``Method`` entry here
with its search function (plus, if it needs them, its own settings in ``cca/localize/config.py`` and the
schema): see docs/extending.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd

from cca.errors import CCAError
from cca.localize.pivots import branching_bisect, branching_scan, drive_searches, prefix_pivot
from cca.tasks.prompting import gold_answer
from cca.traces.build import score, truncate_completion_ids
from cca.traces.generation import Backend, SamplingSpec


@dataclass(frozen=True)
class Method:
    name: str
    generates: bool          # its search generates completions (a model job with a backend)
    prefix_source: str       # the trace the Error-Localization prefix is cut from: greedy | opposite
    no_pivot: str            # the status of a pair whose search found no pivot
    find: Callable[..., dict]   # (pairs, *, backend, max_new_tokens, search, batch, bisect_points, progress)
    #                             -> {instance_id: Pivot | None}


def prefix_pivots(pairs: pd.DataFrame, **_) -> dict:
    """The first token where the greedy and the opposite trace differ, for every pair."""
    return {r.instance_id: prefix_pivot(tuple(r.completion_ids), tuple(r.opposite_ids), r.greedy_correct)
            for r in pairs.itertuples()}


def branching_pivots(pairs: pd.DataFrame, backend: Backend, max_new_tokens: int, search: str, batch: int,
                     bisect_points: int | None, progress: bool = False) -> dict:
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
            _, ok = score(tok, list(r.opposite_ids[:k]), c.token_ids,
                          gold_answer(r.answer_value, getattr(r, "answer_format", None)))
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


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("prefix", generates=False, prefix_source="greedy", no_pivot="no_difference", find=prefix_pivots),
    Method("branching", generates=True, prefix_source="opposite", no_pivot="no_flip", find=branching_pivots),
)}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise CCAError(f"unknown localization method '{name}': use one of {', '.join(METHODS)}")
    return METHODS[name]
