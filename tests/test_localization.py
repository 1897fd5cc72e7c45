"""Localization on a toy deterministic 'model' where the answer is known by brute force."""
import math
import random

import pytest

from cca.localize.pivots import (Pivot, branching_bisect, branching_scan, drive_searches, first_difference,
                              prefix_pivot, run_search)

STOP, VOCAB, BUDGET = 0, 7, 14


def next_token(seq):
    return hash(("toy", tuple(seq[-3:]))) % VOCAB


def complete(seq, budget):
    """Greedy completion until STOP (inclusive) or the budget."""
    out = []
    seq = list(seq)
    while len(out) < budget:
        t = next_token(seq)
        out.append(t)
        seq.append(t)
        if t == STOP:
            break
    return tuple(out)


def correct(prompt, completion):
    return sum(completion) % 3 == 0


def make_pair(seed):
    rng = random.Random(seed)
    prompt = tuple(rng.randrange(1, VOCAB) for _ in range(4))
    greedy = complete(prompt, BUDGET)
    gc = correct(prompt, greedy)
    for _ in range(1000):
        y = []
        while len(y) < BUDGET:
            # mostly follow the greedy model, sometimes deviate: like sampling at a temperature
            t = next_token(prompt + tuple(y)) if rng.random() < 0.7 else rng.randrange(VOCAB)
            y.append(t)
            if t == STOP:
                break
        y = tuple(y)
        if correct(prompt, y) != gc:
            return prompt, greedy, gc, y
    pytest.skip("no opposite trace for this seed")


def completer(prompt, y):
    def run(ks):
        out = {}
        for k in ks:
            c = complete(prompt + y[:k], BUDGET - k)
            out[k] = (c, correct(prompt, y[:k] + c))
        return out
    return run


def brute_force_first_flip(prompt, greedy, gc, y):
    for k in range(1, len(y) + 1):
        c = complete(prompt + y[:k], BUDGET - k) if k < len(y) else ()
        if correct(prompt, y[:k] + c) != gc:
            return k
    return None


@pytest.mark.parametrize("seed", range(60))
def test_scan_finds_the_first_flip_with_fewer_completions(seed):
    prompt, greedy, gc, y = make_pair(seed)
    expected = brute_force_first_flip(prompt, greedy, gc, y)
    calls = []
    run = completer(prompt, y)
    pivot = run_search(branching_scan(greedy, gc, y, batch=3), lambda ks: calls.append(ks) or run(ks))
    assert expected is not None
    if pivot is None:  # only when the model stops right at the intervention point
        assert complete(prompt + y[:expected - 1], BUDGET - expected + 1)[:1] in ((), (y[expected - 1],))
        return
    assert pivot.position == expected - 1
    taken = y[expected - 1]
    alternative = complete(prompt + y[:expected - 1], BUDGET - expected + 1)[0]
    assert {pivot.desired, pivot.undesired} == {taken, alternative}
    assert (pivot.undesired == taken) == gc  # the sampled token is the wrong one iff greedy was right
    # Completions: the naive scan's (one per k up to the flip) plus at most one batch of look-ahead.
    n = sum(map(len, calls))
    assert n == pivot.completions <= min(expected + 2, len(y))
    one_at_a_time = run_search(branching_scan(greedy, gc, y, batch=1), run)
    assert one_at_a_time == Pivot(pivot.position, pivot.desired, pivot.undesired, one_at_a_time.completions)
    assert one_at_a_time.completions <= expected
    d = first_difference(greedy, y)
    assert all(k > d for ks in calls for k in ks)  # prefixes on the greedy path are never completed


@pytest.mark.parametrize("points", [1, 3])
@pytest.mark.parametrize("seed", range(60))
def test_bisect_finds_a_flip(seed, points):
    prompt, greedy, gc, y = make_pair(seed)
    run = completer(prompt, y)
    rounds = []
    pivot = run_search(branching_bisect(greedy, gc, y, points=points), lambda ks: rounds.append(ks) or run(ks))
    if pivot is None:
        return
    k = pivot.position + 1
    before = complete(prompt + y[:k - 1], BUDGET - k + 1)
    after = complete(prompt + y[:k], BUDGET - k) if k < len(y) else ()
    assert correct(prompt, y[:k - 1] + before) == gc
    assert correct(prompt, y[:k] + after) != gc
    assert all(len(r) <= points for r in rounds)
    # rounds: ceil(log_(points+1)(m)) or fewer
    assert len(rounds) <= math.ceil(math.log(len(y) + 1, points + 1)) + 1
    assert pivot.completions <= points * (len(rounds))


def test_drive_searches_batches_pairs_and_matches_single_runs():
    pairs = {s: make_pair(s) for s in range(20)}
    single = {s: run_search(branching_scan(g, gc, y), completer(p, y)) for s, (p, g, gc, y) in pairs.items()}
    rounds = []

    def complete_many(requests):
        rounds.append(len(requests))
        out = {}
        for key, k in requests:
            p, _, _, y = pairs[key]
            out[(key, k)] = completer(p, y)([k])[k]
        return out

    ended = []
    together = drive_searches({s: branching_scan(g, gc, y) for s, (p, g, gc, y) in pairs.items()}, complete_many,
                              finished=lambda: ended.append(len(rounds)))
    assert together == single
    assert max(rounds) > 1  # several pairs per engine call
    assert len(ended) == len(pairs) and ended[-1] == len(rounds)  # progress: once per search, as each ends


def test_prefix_pivot():
    greedy, opposite = (5, 6, 7, 8), (5, 6, 9, 8)
    assert prefix_pivot(greedy, opposite, greedy_correct=False) == Pivot(2, desired=9, undesired=7, completions=0)
    assert prefix_pivot(greedy, opposite, greedy_correct=True) == Pivot(2, desired=7, undesired=9, completions=0)
    assert prefix_pivot((1, 2), (1, 2, 3), True) is None
