"""Drawing, framing and verifying instances (see ``sampling`` and ``render`` for the rules).

Draws whose question repeats an earlier one are dropped, so the ``n`` instances have
distinct questions. An instance is kept only if its ``#answer`` is a number with a
finite decimal expansion and the solution's ``####`` value equals it. A template with
fewer than 10 valid draws in its first 20,000 switches to :class:`sampling.Exhaustive`
when its constrained variables all come from fixed lists and the enumeration fits a
budget. Drawing stops with a TemplateError once ``max_tries`` draws or ``time_limit``
seconds are spent (the time limit is checked between draws and inside evaluation).
"""
from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

from cca.templates.evaluator import Env, EvalError, EvalTimeout, is_collection, show, wrap_item
from cca.templates.parse import Template
from cca.templates.render import decode_value, encode_value, render_question, render_solution
from cca.templates.sampling import Exhaustive, answer_number, schedule, try_draw
from cca.templates.values import Worded, decimal_string, format_answer, is_number, norm_number, plain

DEFAULT_MAX_TRIES = 1_000_000  # the rarest upstream template (p2/0005) needs ~400k for 50
GIVE_UP_AFTER = 200_000       # ... but a template with no valid draw by then fails at once
EXHAUSTIVE_AFTER = 20_000     # draws before a rare template may switch to Exhaustive
EXHAUSTIVE_MIN_PASSED = 10    # ... which it does if fewer draws than this met the conditions
EXHAUSTIVE_BUDGET = 200_000   # condition evaluations the enumeration may spend (~1 s)
DEFAULT_TIME_LIMIT = 600.0    # seconds; the slowest upstream template needs ~20 s for 50


@dataclass(frozen=True)
class Instance:
    template_id: str
    index: int
    question: str
    solution: str
    answer: str
    answer_value: float
    variables: dict  # JSON-serialisable (see encode_value)


def _rng(t: Template, seed: int) -> random.Random:
    return random.Random(f"{t.template_id}|{int(seed)}")


def draw_instances(t: Template, n: int, seed: int, max_tries: int = DEFAULT_MAX_TRIES,
                   time_limit: float = DEFAULT_TIME_LIMIT) -> list[Instance]:
    """``n`` instances with distinct questions, deterministic for (template, n, seed).

    The draws for a smaller ``n`` are a prefix of those for a larger one. Raises
    TemplateError when ``max_tries`` draws give fewer than ``n`` valid distinct ones, or
    when drawing takes longer than ``time_limit`` seconds.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    try:
        return _draw(t, n, seed, max_tries, time.monotonic() + time_limit)
    except EvalTimeout:
        raise t.error(f"drawing {n} instances took longer than the time limit of {time_limit:g} s; "
                      "simplify its #init and #conditions, or pass a larger time_limit") from None


def _draw(t: Template, n: int, seed: int, max_tries: int, deadline: float) -> list[Instance]:
    steps = schedule(t)
    env = Env({}, _rng(t, seed), deadline=deadline)
    seen, out = set(), []
    tries = errors = failed = mismatch = nonfinite = passed = 0
    first_error = first_mismatch = None
    exhaustive = None
    while len(out) < n:
        if tries >= max_tries:
            raise t.error(f"only {len(out)} of {n} distinct valid instances in {max_tries} draws "
                          f"({failed} failed a condition, {nonfinite} had an answer without a finite "
                          f"decimal, {mismatch} had a solution disagreeing with #answer, "
                          f"{errors} raised errors{'; first: ' + first_error if first_error else ''})")
        if time.monotonic() > deadline:
            raise EvalTimeout("time limit reached")
        if tries == EXHAUSTIVE_AFTER and exhaustive is None and passed < EXHAUSTIVE_MIN_PASSED:
            exhaustive = Exhaustive(t, EXHAUSTIVE_BUDGET, deadline)
            if exhaustive.leaves == []:
                raise t.error("no values satisfy all the conditions")
            if exhaustive.leaves is None:
                exhaustive = False
        if passed >= 25 and mismatch == passed:
            raise t.error(f"the solution's #### never equals #answer ({passed} draws that satisfy the "
                          f"conditions; e.g. {first_mismatch})", t.answer_line)
        if passed >= 25 and nonfinite == passed:
            raise t.error(f"#answer never has a finite decimal expansion ({passed} draws that satisfy "
                          "the conditions)", t.answer_line)
        if tries >= GIVE_UP_AFTER and passed == 0:
            raise t.error(f"no draw satisfied the conditions in {tries} draws "
                          f"({errors} raised errors{'; first: ' + first_error if first_error else ''})")
        if errors >= 1000 and errors == tries:
            raise t.error(f"every draw fails: {first_error}")
        tries += 1
        try:
            ans = exhaustive.draw(t, env) if exhaustive else try_draw(t, steps, env)
            if ans is None:
                failed += 1
                continue
            passed += 1
            if decimal_string(ans) is None:
                nonfinite += 1
                continue
            final = plain(t.final_hole.expr(env))
            if not is_number(final) or norm_number(final) != ans:
                mismatch += 1
                if first_mismatch is None:
                    first_mismatch = f"#### {show(final, quote=False)} vs #answer {format_answer(ans)}"
                continue
            question = render_question(t, values=env.vars)
            if question in seen:
                continue
            solution = render_solution(t, env, ans)
        except EvalError as e:
            errors += 1
            if first_error is None:
                first_error = str(e)
            continue
        seen.add(question)
        out.append(Instance(t.template_id, len(out), question, solution, format_answer(ans),
                            float(ans), {k: encode_value(v) for k, v in env.vars.items()}))
    return out


def instances_frame(instances: list[Instance]):
    import pandas as pd

    cols = ["template_id", "instance_id", "index", "question", "solution", "answer",
            "answer_value", "variables"]
    rows = [{"template_id": i.template_id, "instance_id": f"{i.template_id}#{i.index}",
             "index": i.index, "question": i.question, "solution": i.solution, "answer": i.answer,
             "answer_value": i.answer_value,
             "variables": json.dumps(i.variables, sort_keys=True, ensure_ascii=False)}
            for i in instances]
    df = pd.DataFrame(rows, columns=cols)
    return df.astype({"index": "int64", "answer_value": "float64"})


# ------------------------------------------------------------------ verification
def _same(a, b) -> bool:
    if isinstance(a, Worded) or isinstance(b, Worded):
        if not (isinstance(a, Worded) and isinstance(b, Worded)):
            return False
        return a.text == b.text and _same(a.value, b.value)
    if is_number(a) and is_number(b):
        return norm_number(a) == norm_number(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):  # JSON turns tuples into lists
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _in_domain(v, domain) -> bool:
    if isinstance(domain, range):
        return is_number(v) and not isinstance(v, Worded) and norm_number(v) in domain
    return any(_same(v, wrap_item(d)) for d in domain)


def verify_instance(t: Template, row: Mapping) -> list[str]:
    """Problems with one instance row (empty list: valid).

    Decodes ``row["variables"]`` (dict or JSON string), checks each variable is one the
    template can draw (where its domain is a fixed list), every condition, that the
    question (and solution, if present) re-render identically, and the answer.
    """
    problems = []
    raw = row.get("variables")
    try:
        raw = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(raw, Mapping):
            return ["variables is not a JSON object"]
        values = {k: decode_value(v) for k, v in raw.items()}
    except (ValueError, TypeError) as e:
        return [f"cannot decode variables: {e}"]
    missing = [v for v in t.variables if v not in values]
    extra = [v for v in values if v not in t.variables]
    if missing:
        return [f"variables lack {missing}"]
    if extra:
        problems.append(f"unknown variables {extra}")
    env = Env(dict(values), random.Random(0))
    for s in t.init:
        if s.domain is None:
            continue
        try:
            dom = s.domain(env)
        except EvalError:
            continue
        if not is_collection(dom):
            continue
        for name in s.targets:
            if not _in_domain(values[name], dom):
                problems.append(f"{name}={show(values[name])} is not a value {s.line} can draw")
    for c in t.conditions:
        try:
            ok = plain(c.expr(env))
        except EvalError as e:
            problems.append(f"condition {c.line} cannot be evaluated: {e}")
            continue
        if not ok:
            problems.append(f"condition {c.line} does not hold")
    try:
        question = render_question(t, values=values)
        if question != row.get("question"):
            problems.append("question text does not match the variables")
        ans = answer_number(t, env)
        final = plain(t.final_hole.expr(env))
        if not is_number(final) or norm_number(final) != ans:
            problems.append(f"the solution's #### gives {show(final, quote=False)}, #answer {format_answer(ans)}")
        if "answer" in row and str(row["answer"]) != format_answer(ans):
            problems.append(f"answer {row['answer']!r} != {format_answer(ans)!r} from #answer")
        if "answer_value" in row and row["answer_value"] is not None:
            if abs(float(row["answer_value"]) - float(ans)) > 1e-9 * max(1.0, abs(float(ans))):
                problems.append(f"answer_value {row['answer_value']} != {float(ans)}")
        if row.get("solution") is not None and row["solution"] != render_solution(t, env, ans):
            problems.append("solution text does not match the variables")
    except EvalError as e:
        problems.append(f"cannot evaluate: {e}")
    return problems
