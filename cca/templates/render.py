"""Rendering instances: question and solution text, and variables as JSON.

A slot shows its variable's surface form (a Worded quantity's text, a number as
:func:`format_answer`), and a slot value that starts a sentence (start of the text, or
after ``.``/``!``/``?`` and a space) gets a capital first letter. The question's
whitespace is normalised (runs of whitespace -> one space, ends stripped). In the
solution a ``{expr}`` shows its value, numbers (Worded ones included: ``twice`` -> 2)
as :func:`format_answer`; GSM8K's ``<<calc>>`` annotations are removed (upstream's are
often malformed), runs of spaces collapse, blank lines are dropped, and the last line is
``#### <answer>``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction

from cca.templates.evaluator import Env
from cca.templates.parse import Slot, Template
from cca.templates.values import Worded, format_answer, is_number, norm_number, render_value


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
        try:
            f = float(v)
        except OverflowError:  # beyond any float: only the exact fraction can say it
            f = None
        return f if f is not None and Fraction(repr(f)) == v else {"fraction": f"{v.numerator}/{v.denominator}"}
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


def render_question(t: Template, values: Mapping | None = None) -> str:
    """The question with each slot showing ``values[var]``, or its default text."""
    out = ""
    for p in t.body:
        if isinstance(p, Slot):
            s = p.default if values is None else render_value(values[p.var])
            out += _cap(out, s)
        else:
            out += p
    return normalize_ws(out)


_CALC_RE = re.compile(r"<<[^<>\n]*>>?")  # one upstream annotation ends in a single ">"


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
