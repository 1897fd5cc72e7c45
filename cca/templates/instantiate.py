"""Drawing, rendering, checking and verifying template instances.

Drawing: variables are drawn in ``#init`` order; an init expression that yields a list or
range is a domain and one item is drawn uniformly from it (so ``range(2, 10)``,
``[0.25, 0.5]``, ``np.arange(...)`` and ``sample(...)`` all draw one value); a drawn
``(text, number)`` pair becomes a Worded quantity. Each condition is tested as soon as
its variables are set and the whole draw restarts on failure (plain rejection sampling:
every valid assignment keeps its prior probability). Draws whose question text repeats
an earlier one are dropped, so the ``n`` instances have distinct questions.

Rendering: a slot shows its variable's surface form (a Worded quantity's text, a number
as :func:`format_answer`), and a slot value that starts a sentence (start of the text,
or after ``.``/``!``/``?`` and a space) gets a capital first letter. The question's
whitespace is normalised (runs of whitespace -> one space, ends stripped). In the
solution a ``{expr}`` shows its value, numbers (Worded ones included: ``twice`` -> 2)
as :func:`format_answer`; GSM8K's ``<<calc>>`` annotations are removed (upstream's are
often malformed), runs of spaces collapse, blank lines are dropped, and the last line is
``#### <answer>``. An instance is kept only if its ``#answer`` is a number with a finite
decimal expansion and the solution's ``####`` value equals it.
"""
from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from .evaluator import Env, EvalError, is_collection, wrap_item
from .parse import Slot, Template, TemplateError
from .values import (Worded, decimal_string, format_answer, is_number, norm_number, parse_quantity,
                     plain, render_value)

DEFAULT_MAX_TRIES = 200_000


@dataclass(frozen=True)
class Instance:
    template_id: str
    index: int
    question: str
    solution: str
    answer: str
    answer_value: float
    variables: dict  # JSON-serialisable (see encode_value)


# ------------------------------------------------------------------ variables <-> JSON
def encode_value(v):
    """JSON form of a variable: int, float (only when exact), str, list, or
    ``{"text": ..., "value": ...}`` for a Worded quantity, ``{"fraction": "p/q"}``."""
    if isinstance(v, Worded):
        return {"text": v.text, "value": encode_value(v.value)}
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if is_number(v):
        v = norm_number(v)
        if isinstance(v, int):
            return v
        f = float(v)
        return f if Fraction(repr(f)) == v else {"fraction": f"{v.numerator}/{v.denominator}"}
    if isinstance(v, (list, tuple, range)):
        return [encode_value(x) for x in v]
    raise TypeError(f"cannot encode {v!r}")


def decode_value(v):
    if isinstance(v, dict):
        if set(v) == {"text", "value"}:
            return Worded(str(v["text"]), decode_value(v["value"]))
        if set(v) == {"fraction"}:
            return norm_number(Fraction(str(v["fraction"])))
        raise ValueError(f"unknown variable encoding {v!r}")
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return norm_number(v)
    if isinstance(v, list):
        return [decode_value(x) for x in v]
    raise ValueError(f"unknown variable encoding {v!r}")


# ------------------------------------------------------------------ rendering
def normalize_ws(s: str) -> str:
    return " ".join(s.split())


def _sentence_start(before: str) -> bool:
    stripped = before.rstrip()
    return (not stripped or before.endswith("\n")
            or (stripped[-1] in ".!?" and len(stripped) < len(before)))


def _cap(before: str, s: str) -> str:
    if s and s[0].islower() and _sentence_start(before):
        return s[0].upper() + s[1:]
    return s


def render_question(t: Template, texts: Mapping[str, str] | None = None, values: Mapping | None = None) -> str:
    """Fill the slots with their defaults (``texts is None and values is None``), or with
    ``texts[var]`` / the surface form of ``values[var]``."""
    out = ""
    for p in t.body:
        if isinstance(p, Slot):
            if values is not None:
                s = render_value(values[p.var])
            elif texts is not None:
                s = texts[p.var]
            else:
                s = p.default
            out += _cap(out, s)
        else:
            out += p
    return normalize_ws(out)


_CALC_RE = re.compile(r"<<[^\n]*?>>")


def _solution_value(hole, env):
    v = hole.expr(env)
    if isinstance(v, Worded) and is_number(v.value):
        v = v.value
    return v


def render_solution(t: Template, env: Env, final_answer) -> str:
    out = ""
    for p in t.solution:
        out += p if isinstance(p, str) else _cap(out, render_value(_solution_value(p, env)))
    out = _CALC_RE.sub("", out)
    lines = [" ".join(l.split()) for l in out.split("\n")]
    lines = [l for l in lines if l]
    lines[-1] = f"#### {format_answer(final_answer)}"
    return "\n".join(lines)


# ------------------------------------------------------------------ drawing
def _schedule(t: Template):
    """Init statements interleaved with each condition right after its last variable."""
    pos = {v: i for i, s in enumerate(t.init) for v in s.targets}
    after = [[] for _ in range(len(t.init) + 1)]
    for c in t.conditions:
        k = max((pos[v] + 1 for v in c.expr.names), default=0)
        after[k].append(c)
    steps = [("check", c) for c in after[0]]
    for i, s in enumerate(t.init):
        steps.append(("init", s))
        steps.extend(("check", c) for c in after[i + 1])
    return steps


def assign(stmt, env: Env):
    v = stmt.expr(env)
    if len(stmt.targets) == 1:
        if is_collection(v):
            if len(v) == 0:
                raise EvalError("nothing to draw from (empty list)")
            v = v[env.rng.randrange(len(v))]
        env.vars[stmt.targets[0]] = wrap_item(v)
        return
    v = plain(v)
    if not isinstance(v, (list, tuple)) or len(v) != len(stmt.targets):
        raise EvalError(f"needs {len(stmt.targets)} values to unpack, got {render_value(v)!r}")
    for name, x in zip(stmt.targets, v):
        env.vars[name] = wrap_item(x)


def _answer_number(t, env, line_of_err=None):
    a = plain(t.answer_expr(env))
    if not is_number(a):
        raise EvalError(f"#answer is not a number: {render_value(a)!r}")
    return norm_number(a)


def _try_draw(t: Template, steps, env: Env):
    """One draw: the answer, or None if a condition fails."""
    env.vars = {}
    for kind, x in steps:
        if kind == "init":
            assign(x, env)
        elif not plain(x.expr(env)):
            return None
    return _answer_number(t, env)


def _rng(t: Template, seed: int) -> random.Random:
    return random.Random(f"{t.template_id}|{int(seed)}")


def draw_instances(t: Template, n: int, seed: int, max_tries: int = DEFAULT_MAX_TRIES) -> list[Instance]:
    """``n`` instances with distinct questions, deterministic for (template, n, seed).

    The draws for a smaller ``n`` are a prefix of those for a larger one. Raises
    TemplateError when ``max_tries`` draws give fewer than ``n`` valid distinct ones.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    steps = _schedule(t)
    env = Env({}, _rng(t, seed))
    seen, out = set(), []
    tries = errors = rejected = 0
    first_error = None
    while len(out) < n:
        if tries >= max_tries:
            why = (f"only {len(out)} of {n} distinct valid instances in {max_tries} draws "
                   f"({rejected} failed a condition or a check, {errors} raised errors")
            why += f"; first error: {first_error})" if first_error else ")"
            raise t.error(why)
        tries += 1
        try:
            ans = _try_draw(t, steps, env)
            if ans is None:
                rejected += 1
                continue
            if decimal_string(ans) is None:
                rejected += 1
                continue
            final = plain(t.final_hole.expr(env))
            if not is_number(final) or norm_number(final) != ans:
                rejected += 1
                continue
            question = render_question(t, values=env.vars)
            if question in seen:
                continue
            solution = render_solution(t, env, ans)
        except EvalError as e:
            errors += 1
            if first_error is None:
                first_error = str(e)
            if errors == tries and tries >= 1000:
                raise t.error(f"every draw fails: {first_error}") from None
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
                problems.append(f"{name}={render_value(values[name])!r} is not a value {s.line} can draw")
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
        ans = _answer_number(t, env)
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
