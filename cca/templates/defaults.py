"""Checking a template against its own defaults and the source GSM8K item.

Values at defaults: a slot's default text is looked up in its variable's domain (the
fixed list it is drawn from, e.g. ``half`` in ``fraction_alnum`` -> 1/2); otherwise a
numeric variable's default is read by :func:`parse_quantity` (``forty-two``, ``1/2``,
``twice``), and a text variable's default is its value. A variable without a slot that
the answer needs is solved from a ``lhs == rhs`` condition (linear in it, e.g.
``x + y + z + ans == total``) or, failing that, is the single value of its domain that
satisfies the conditions.

Text comparison (documented normalisation): both texts have runs of whitespace collapsed
to one space and their ends stripped, and a space between digit groups is removed
(``$400 000`` == ``$400000``). The rendered text capitalises a slot value that starts a
sentence (the same rule as for drawn instances). Nothing else is forgiven.
"""
from __future__ import annotations

import difflib
import random
import re
from fractions import Fraction

from cca.templates.evaluator import Env, EvalError, is_collection, show, wrap_item
from cca.templates.render import normalize_ws, render_question
from cca.templates.parse import Template, TemplateError
from cca.templates.values import Worded, format_answer, is_number, norm_number, parse_quantity, plain, render_value


def _norm_text(s: str) -> str:
    s = normalize_ws(s)
    return re.sub(r"(?<=\d) (?=\d{3}\b)", "", s)


def _domain_items(t: Template, stmt):
    if stmt.domain is None:
        return None
    try:
        d = stmt.domain(Env({}, random.Random(0)))
    except EvalError:
        return None
    return [wrap_item(x) for x in d] if is_collection(d) and len(d) <= 100_000 else None


def _key(s: str) -> str:
    return normalize_ws(s).lower()


def _value_from_default(t, var, text, numeric, items):
    if items is not None:
        for it in items:
            if _key(render_value(it)) == _key(text):
                return it
    if numeric:
        q = parse_quantity(text)
        if q is None:
            raise t.error(f"default '{text}' of numeric variable '{var}' is not a number")
        if items and all(isinstance(i, Worded) for i in items):
            return Worded(text, q)
        return q
    return text


def default_values(t: Template) -> dict:
    """Values of the slotted variables at their defaults."""
    texts = {}
    for s in t.slots():
        texts.setdefault(s.var, []).append(s.default)
    values = {}
    for stmt in t.init:
        items = _domain_items(t, stmt)
        numeric_dom = bool(items) and all(is_number(plain(i)) for i in items)
        for var, dollar in zip(stmt.targets, stmt.numeric):
            if var not in texts:
                continue
            vals = [_value_from_default(t, var, x, dollar or numeric_dom, items) for x in texts[var]]
            first = plain(vals[0])
            for x, v in zip(texts[var], vals):
                pv = plain(v)
                if is_number(first) != is_number(pv) or (is_number(first) and norm_number(first) != norm_number(pv)):
                    raise t.error(f"the slots of '{var}' disagree: '{texts[var][0]}' vs '{x}'")
            values[var] = vals[0]
    return values


def _solve(t: Template, values: dict, var: str):
    env = Env(dict(values), random.Random(0))
    known = set(values)
    for c in t.conditions:
        if c.eq_diff is None or var not in c.expr.names or not (c.expr.names - {var}) <= known:
            continue
        try:
            env.vars[var] = 0
            f0 = plain(c.eq_diff(env))
            env.vars[var] = 1
            f1 = plain(c.eq_diff(env))
            if not (is_number(f0) and is_number(f1)) or f0 == f1:
                continue
            u = norm_number(-Fraction(f0) / (Fraction(f1) - Fraction(f0)))
            env.vars[var] = u
            if plain(c.eq_diff(env)) == 0:
                return u
        except EvalError:
            continue
    stmt = next(s for s in t.init if var in s.targets)
    items = _domain_items(t, stmt)
    if items is not None and len(stmt.targets) == 1:
        conds = [c for c in t.conditions if var in c.expr.names and c.expr.names - {var} <= known]
        found = []
        for it in items:
            env.vars[var] = it
            try:
                if conds and all(plain(c.expr(env)) for c in conds):
                    found.append(it)
            except EvalError:
                continue
        if len(found) == 1:
            return found[0]
    return None


def values_at_defaults(t: Template) -> dict:
    """Default values, plus the unslotted variables that the answer needs, solved."""
    values = default_values(t)
    needed = set(t.answer_expr.names) | set(t.final_hole.expr.names)
    changed = True
    while changed:
        changed = False
        for var in sorted(needed - set(values)):
            v = _solve(t, values, var)
            if v is not None:
                values[var] = v
                changed = True
    missing = sorted(needed - set(values))
    if missing:
        names = ", ".join(f"'{m}'" for m in missing)
        raise t.error(f"the answer needs {names}, which {'has' if len(missing) == 1 else 'have'} "
                      "no slot default and cannot be solved from the conditions")
    return values


def _original_answer(t: Template):
    lines = [l for l in t.answer.strip().splitlines() if l.strip()]
    m = re.fullmatch(r"####\s*(.+?)\s*", lines[-1]) if lines else None
    if m is None:
        raise t.error("the original answer has no final line '#### N'")
    q = parse_quantity(m.group(1).replace(",", "").replace("$", ""))
    if q is None:
        raise t.error(f"the original final answer '{m.group(1)}' is not a number")
    return q


MAX_DIFF_WORDS = 2_000


def word_diff(original: str, rendered: str) -> str:
    """``'a b' -> 'c'; ...``: what the rendered text changes in the original, word level."""
    a, b = original.split(), rendered.split()
    if len(a) > MAX_DIFF_WORDS or len(b) > MAX_DIFF_WORDS:  # the diff's cost grows with len(a) * len(b)
        return f"the texts differ ({len(a)} and {len(b)} words; over {MAX_DIFF_WORDS} are not compared word by word)"
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    return "; ".join(f"'{' '.join(a[i1:i2])}' -> '{' '.join(b[j1:j2])}'"
                     for tag, i1, i2, j1, j2 in ops if tag != "equal")


def _problems(t: Template, against_original: bool) -> list[str]:
    values = values_at_defaults(t)
    env = Env(dict(values), random.Random(0))
    problems = []
    try:
        ans = plain(t.answer_expr(env))
        final = plain(t.final_hole.expr(env))
    except EvalError as e:
        raise t.error(f"cannot evaluate the answer at the defaults: {e}", t.answer_line) from None
    if not is_number(ans):
        raise t.error(f"#answer at the defaults is not a number: {show(ans)}", t.answer_line)
    ans = norm_number(ans)
    if not is_number(final) or norm_number(final) != ans:
        problems.append(f"solution's #### gives {show(final, quote=False)}, #answer gives {format_answer(ans)}")
    if against_original:
        orig = _original_answer(t)
        if orig != ans:
            problems.append(f"answer: #answer gives {format_answer(ans)} at the defaults, "
                            f"GSM8K says {format_answer(orig)}")
        rendered = _norm_text(render_question(t))
        original = _norm_text(t.question)
        if rendered != original:
            problems.append(f"question: {word_diff(original, rendered)}")
    return problems


def default_problems(t: Template, against_original: bool = True) -> list[str]:
    """What :func:`check_defaults` objects to, one string per problem (empty: passes)."""
    prefix = f"template {t.template_id}: "
    try:
        return _problems(t, against_original)
    except TemplateError as e:
        msg = str(e)
        return [msg[len(prefix):] if msg.startswith(prefix) else msg]


def check_defaults(t: Template, against_original: bool = True, allow_known: bool = False) -> str | None:
    """Raise TemplateError unless the template is consistent at its defaults.

    Always: every slot default is usable (numeric ones read as numbers, slots of one
    variable agree), the answer's unslotted variables can be solved, ``#answer`` is a
    number and the solution's ``#### {expr}`` equals it. With ``against_original`` (the
    default): the question rendered with the defaults equals the template's ``question``
    (normalisation in the module docstring; differences are listed word by word as
    ``'original' -> 'rendered'``), and ``#answer`` equals its ``#### N``. Use
    ``against_original=False`` for perturbed sets (GSM-P1/P2), whose ``question`` and
    ``answer`` are the unperturbed GSM8K item by design.

    With ``allow_known``, a template listed in :data:`KNOWN_UPSTREAM_DEFECTS` that fails
    for exactly its listed reason returns that reason instead of raising (one that
    passes, or fails otherwise, still raises). Returns None when the template passes.
    """
    from cca.templates.known_defects import KNOWN_UPSTREAM_DEFECTS

    reason = " | ".join(default_problems(t, against_original))
    known = KNOWN_UPSTREAM_DEFECTS.get(t.template_id) if allow_known else None
    if known is not None and reason == known:
        return known
    if known is not None and not reason:
        raise t.error(f"listed in KNOWN_UPSTREAM_DEFECTS ({known!r}) but passes the defaults check")
    if reason:
        raise t.error(f"defaults check failed: {reason}")
    return None
