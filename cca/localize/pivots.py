"""Pivotal-token localization: where does a reasoning trace turn right or wrong?

Pure functions over token-id sequences. A *pair* is a greedy trace and a sampled trace of the
opposite correctness for the same prompt. Both methods return a :class:`Pivot`: the position in
the completion of the pivotal token, the prefix that ends with the intervention token (the one
before the pivot), and the desired / undesired next token at that prefix.

- **prefix**: the pivot is the first position where the two traces differ.
- **branching** (the paper's definition): walk the sampled trace y_1..y_m; for each k, complete
  greedily from (prompt, y_1..y_k); the first k whose completion's correctness differs from the
  greedy trace's is pivotal (y_k is the pivotal token). The exact scan below returns that first k
  while skipping, without changing the answer, every k whose prefix lies on an already computed
  greedy path (there the completion is known: it is the rest of that path). ``bisect`` finds a
  flip in O(log m) completions, not always the first.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

Tokens = tuple[int, ...]


@dataclass(frozen=True)
class Pivot:
    position: int          # index in the completion of the pivotal token
    desired: int           # token id that leads toward the correct answer
    undesired: int         # token id that leads toward the wrong answer
    completions: int       # greedy completions the search cost (0 for prefix)


def first_difference(a: Sequence[int], b: Sequence[int]) -> int | None:
    """Index of the first position where a and b differ (None if one is a prefix of the other)."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None


def prefix_pivot(greedy: Sequence[int], opposite: Sequence[int], greedy_correct: bool) -> Pivot | None:
    p = first_difference(greedy, opposite)
    if p is None:
        return None
    correct, wrong = (greedy, opposite) if greedy_correct else (opposite, greedy)
    return Pivot(position=p, desired=correct[p], undesired=wrong[p], completions=0)


# ---------------------------------------------------------------- branching, as a resumable search
#
# A search is a generator: it yields the prefix lengths k it needs completed (a batch at a time)
# and receives {k: (greedy completion token ids after prompt + y[:k], correct)}; it returns a Pivot
# or None. The caller decides how to run completions, so many pairs' requests share one engine call.

Request = list[int]
Answer = dict[int, tuple[Tokens, bool]]


class _Branches:
    """Greedy completions known so far for prefixes y[:k] of the sampled trace.

    completion(k) is known when it was computed, or when y[k0:k] follows the greedy completion
    computed at some k0 < k (greedy decoding is deterministic, so the completion from y[:k] is the
    rest of that path). k = 0 is the greedy trace itself; k = m (the whole sampled trace) has the
    sampled trace's own, opposite, correctness.
    """

    def __init__(self, greedy: Tokens, greedy_correct: bool, y: Tokens):
        self.y = tuple(y)
        self.known: dict[int, tuple[Tokens, bool]] = {0: (tuple(greedy), greedy_correct),
                                                      len(y): ((), not greedy_correct)}
        self.cost = 0

    def get(self, k: int) -> tuple[Tokens, bool] | None:
        for k0 in sorted((k0 for k0 in self.known if k0 < k), reverse=True):
            path, correct = self.known[k0]
            j = k - k0
            if j <= len(path) and self.y[k0:k] == path[:j]:
                return path[j:], correct
        return self.known.get(k)

    def add(self, answer: Answer) -> None:
        self.cost += len(answer)
        for k, (path, correct) in answer.items():
            self.known[k] = (tuple(path), bool(correct))

    def pivot(self, k: int) -> Pivot | None:
        """Flip at k: y_k (= y[k-1]) is pivotal; the alternative is the greedy next token after y[:k-1]."""
        before = self.get(k - 1)
        greedy_correct = self.known[0][1]
        if before is None or not before[0] or before[0][0] == self.y[k - 1]:
            return None  # no greedy continuation to contrast with (e.g. the model stopped there)
        alternative, taken = before[0][0], self.y[k - 1]
        if greedy_correct:
            return Pivot(k - 1, desired=alternative, undesired=taken, completions=self.cost)
        return Pivot(k - 1, desired=taken, undesired=alternative, completions=self.cost)


def branching_scan(greedy: Tokens, greedy_correct: bool, y: Tokens, batch: int = 8) -> Iterator[Request]:
    """The exact first flip: requests up to ``batch`` unknown prefixes at a time, in order."""
    b = _Branches(greedy, greedy_correct, y)
    k, m = 1, len(y)
    while k <= m:
        if b.get(k) is None:
            need, j = [], k
            while j <= m and len(need) < batch:
                if b.get(j) is None:
                    need.append(j)
                j += 1
            b.add((yield need))
        if b.get(k)[1] != greedy_correct:
            return b.pivot(k)
        k += 1
    return None


def branching_bisect(greedy: Tokens, greedy_correct: bool, y: Tokens, points: int = 1) -> Iterator[Request]:
    """O(log m) search for *a* flip: lo keeps the greedy correctness, hi the opposite one.

    hi starts at m (the whole sampled trace), lo at the first difference from the greedy trace
    (every shorter prefix lies on the greedy path, so has the greedy correctness). Each round
    completes ``points`` evenly spaced prefixes of (lo, hi) together (1: plain bisection) and keeps
    the interval between the first of them that flips and the one before it: log_(points+1)(m)
    rounds instead of log_2(m), for points times the completions per round. More probes bring the
    result closer to the first flip; on 2 CPU cores with 32 pairs in flight they were slower, not
    faster (benchmarks/branching_speed.py, docs/performance.md), so the default is 1.
    """
    b = _Branches(greedy, greedy_correct, y)
    d = first_difference(greedy, y)
    lo = d if d is not None else min(len(greedy), len(y))
    hi = len(y)
    if hi <= lo:
        return None
    while hi - lo > 1:
        n = min(points, hi - lo - 1)
        probes = sorted({lo + (hi - lo) * (i + 1) // (n + 1) for i in range(n)} - {lo, hi})
        need = [k for k in probes if b.get(k) is None]
        if need:
            b.add((yield need))
        for k in probes:
            if b.get(k)[1] == greedy_correct:
                lo = k
            else:
                hi = k
                break
    return b.pivot(hi)


def run_search(search: Iterator[Request], complete: Callable[[list[int]], Answer]):
    """Drive one search to its end with a completion function (single pairs, tests, the reference loop)."""
    try:
        request = next(search)
        while True:
            request = search.send(complete(request))
    except StopIteration as stop:
        return stop.value


def drive_searches(searches: dict, complete_many: Callable[[list[tuple[object, int]]], dict],
                   finished: Callable[[], None] | None = None) -> dict:
    """Run many searches together: each round, gather every search's request into one call.

    ``complete_many([(key, k), ...])`` returns {(key, k): (completion ids, correct)}; ``finished()``
    is called once per search as it ends (progress). Returns {key: Pivot | None}.
    """
    pending, results = {}, {}
    for key, search in searches.items():
        try:
            pending[key] = (search, next(search))
        except StopIteration as stop:
            results[key] = stop.value
            if finished:
                finished()
    while pending:
        answers = complete_many([(key, k) for key, (_, req) in pending.items() for k in req])
        nxt = {}
        for key, (search, req) in pending.items():
            try:
                nxt[key] = (search, search.send({k: answers[(key, k)] for k in req}))
            except StopIteration as stop:
                results[key] = stop.value
                if finished:
                    finished()
        pending = nxt
    return results
