"""Reading GSM-Symbolic style template files into :class:`Template` objects.

A file is JSON with ``question`` and ``answer`` (the source GSM8K item), ``id_orig``,
``question_annotated`` and ``answer_annotated``. ``question_annotated`` is the question
with ``{var,default}`` slots, then the sections::

    #init:
    - name = sample(names)          # text variable
    - $x = range(10, 500, 10)       # $ marks a numeric variable
    - a, b = sample(colors, 2)      # tuple targets
    #conditions:
    - k * y < x * 12
    #answer: int(k * y / (x * 12) * 100)

Tolerated upstream quirks: ``-expr`` without a space after the dash, ``#answer = expr``,
``$name`` inside expressions (``#answer: $ans``), an answer wrapped in braces
(``#answer: {t + k}``), and a definition repeated word for word (the repeat is ignored;
a variable defined twice differently is an error). ``answer_annotated`` is a solution text with ``{expr}`` holes whose
last non-empty line is ``#### {expr}``.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

from cca.errors import CCAError
from cca.templates.evaluator import Compiled, Env, EvalError, dotted_name, compile_expr


class TemplateError(CCAError, ValueError):
    """A template cannot be used; the message names the template, the line and the problem."""


@dataclass(frozen=True)
class Slot:
    var: str
    default: str


@dataclass(frozen=True)
class Line:
    """Where something comes from, for error messages."""
    field: str      # "question_annotated" or "answer_annotated"
    number: int     # 1-based line number within that field
    text: str

    def __str__(self):
        text = self.text.strip()
        text = text if len(text) <= 200 else text[:200] + "..."
        return f"{self.field} line {self.number} `{text}`"


@dataclass(frozen=True)
class InitStmt:
    targets: tuple[str, ...]
    numeric: tuple[bool, ...]
    expr: Compiled
    line: Line
    domain: Compiled | None = None  # the fixed list the value is drawn from, when there is one
    uniform: bool = False           # the value is one item of `domain`, uniformly (`X`, `sample(X)`)


@dataclass(frozen=True)
class Condition:
    expr: Compiled
    line: Line
    eq_diff: Compiled | None = None  # lhs - rhs of a `lhs == rhs` condition
    linear_in: frozenset = frozenset()  # variables in which eq_diff is linear


@dataclass(frozen=True)
class Hole:
    """An ``{expr}`` in the solution template."""
    expr: Compiled
    line: Line
    bare_var: str | None  # set when the hole is just a variable name


@dataclass(frozen=True, eq=False)
class Template:
    template_id: str
    path: str
    question: str              # source GSM8K question
    answer: str                # source GSM8K solution, last line "#### N"
    id_orig: int | None
    body: tuple                # question text pieces: str or Slot
    init: tuple[InitStmt, ...]
    conditions: tuple[Condition, ...]
    answer_expr: Compiled
    answer_line: Line
    solution: tuple            # solution pieces: str or Hole
    final_hole: Hole           # the hole of the "#### {expr}" line

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(v for s in self.init for v in s.targets)

    @property
    def numeric_variables(self) -> frozenset:
        return frozenset(v for s in self.init for v, n in zip(s.targets, s.numeric) if n)

    def slots(self) -> list[Slot]:
        return [p for p in self.body if isinstance(p, Slot)]

    def error(self, problem: str, line: Line | None = None) -> TemplateError:
        return _err(self.template_id, problem, line)


_SLOT_RE = re.compile(r"\{\s*([A-Za-z_]\w*)\s*,([^{}]*)\}")  # default stripped after: no backtracking
_TARGETS_RE = re.compile(r"^(\$?[A-Za-z_]\w*(?:\s*,\s*\$?[A-Za-z_]\w*)*)\s*=(?!=)\s*(.+)$")
_SECTION_RE = re.compile(r"^#\s*(init|conditions|answer)\b\s*[:=]?\s*(.*)$")


def strip_dollars(expr: str) -> str:
    """Drop ``$`` before identifiers outside string literals (``$ans`` -> ``ans``)."""
    out, quote, i = [], None, 0
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                out.append(expr[i:i + 2])
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "$" and i + 1 < len(expr) and (expr[i + 1].isalpha() or expr[i + 1] == "_"):
            i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _err(tid, problem, line=None):
    where = f" {line}:" if line is not None else ""
    return TemplateError(f"template {tid}:{where} {problem}")


def _compile(tid, source, variables, line, fold_env, random_ok=True):
    try:
        c = compile_expr(strip_dollars(source), variables, fold_env)
    except EvalError as e:
        raise _err(tid, str(e), line) from None
    if c.random and not random_ok:
        raise _err(tid, "random functions (sample, shuffle_list, randint, ...) belong in #init only", line)
    return c


def _parse_body(tid, body, variables):
    parts, pos = [], 0
    for m in _SLOT_RE.finditer(body):
        parts.append(body[pos:m.start()])
        var, default = m.group(1), m.group(2).strip()
        k = body.count("\n", 0, m.start())
        line = Line("question_annotated", k + 1, body.split("\n")[k])
        if var not in variables:
            raise _err(tid, f"slot {{{var},...}} names a variable that #init does not define", line)
        parts.append(Slot(var, default))
        pos = m.end()
    parts.append(body[pos:])
    for text in parts:
        if isinstance(text, str) and ("{" in text or "}" in text):
            bad = re.search(r"[{}][^{}]{0,30}", text).group(0)
            raise _err(tid, f"malformed slot near '{bad}' (slots are {{name,default}})")
    if not any(isinstance(p, Slot) for p in parts):
        raise _err(tid, "the question has no {var,default} slots")
    return tuple(p for p in parts if p != "")


def _parse_solution(tid, text, variables, fold_env):
    lines = text.split("\n")
    pieces = []
    hole_re = re.compile(r"\{([^{}]*)\}")
    for n, raw in enumerate(lines, 1):
        line = Line("answer_annotated", n, raw)
        pos = 0
        for m in hole_re.finditer(raw):
            pieces.append(raw[pos:m.start()])
            src = m.group(1).strip()
            if not src:
                raise _err(tid, "empty {} in the solution template", line)
            expr = _compile(tid, src, variables, line, fold_env, False)
            bare = strip_dollars(src) if re.fullmatch(r"\$?[A-Za-z_]\w*", src) else None
            pieces.append(Hole(expr, line, bare))
            pos = m.end()
        rest = raw[pos:]
        if "{" in rest or "}" in rest:
            raise _err(tid, "unbalanced brace in the solution template", line)
        pieces.append(rest + ("\n" if n < len(lines) else ""))
    nonempty = [(n, l) for n, l in enumerate(lines, 1) if l.strip()]
    if not nonempty or not nonempty[-1][1].strip().startswith("####"):
        raise _err(tid, "answer_annotated must end with a line '#### {expr}'")
    n_last, last = nonempty[-1]
    holes = [p for p in pieces if isinstance(p, Hole) and p.line.number == n_last]
    if len(holes) != 1 or not re.fullmatch(r"####\s*\{[^{}]*\}\s*", last.strip()):
        raise _err(tid, "the last line must be exactly '#### {expr}'", Line("answer_annotated", n_last, last))
    merged = []
    for p in pieces:
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] += p
        else:
            merged.append(p)
    return tuple(p for p in merged if p != ""), holes[0]


def _domain(src, variables, fold_env):
    """For `sample(X)`, `sample(X, k)`, `sample_sequential(X, k)` or a plain X: X, if it is fixed."""
    tree = ast.parse(src.strip(), mode="eval").body
    uniform = True
    if (isinstance(tree, ast.Call) and dotted_name(tree.func) in ("sample", "sample_sequential")
            and tree.args and not tree.keywords):
        uniform = dotted_name(tree.func) == "sample" and len(tree.args) == 1
        tree = tree.args[0]
    if uniform:
        tree = _drop_shuffles(tree)
    src = ast.unparse(tree)
    try:
        c = compile_expr(src, variables, fold_env)
    except EvalError:
        return None, False
    return (c, uniform) if not c.names and not c.random else (None, False)


def _linear(node, v):
    """'const' if ``v`` does not occur, 'lin' if the expression is linear in it, else None."""
    if not any(isinstance(n, ast.Name) and n.id == v for n in ast.walk(node)):
        return "const"
    if isinstance(node, ast.Name):
        return "lin"
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return _linear(node.operand, v)
    if isinstance(node, ast.BinOp):
        a, b = _linear(node.left, v), _linear(node.right, v)
        if a is None or b is None:
            return None
        if isinstance(node.op, (ast.Add, ast.Sub)):
            return "lin"
        if isinstance(node.op, ast.Mult):
            return "lin" if "const" in (a, b) else None
        if isinstance(node.op, ast.Div):
            return a if b == "const" else None
    return None


def _drop_shuffles(tree):
    """In ``fix_floats(shuffle_list(list(X)))``-style wrappers of a list that one item is
    drawn from uniformly, the shuffle changes nothing: drop it (the rest stays)."""
    if (isinstance(tree, ast.Call) and dotted_name(tree.func) in ("fix_floats", "list", "shuffle_list")
            and len(tree.args) == 1 and not tree.keywords):
        inner = _drop_shuffles(tree.args[0])
        if dotted_name(tree.func) == "shuffle_list":
            return inner
        return ast.Call(tree.func, [inner], [])
    return tree


def _eq_diff(src, variables, fold_env):
    """(lhs - rhs, the variables it is linear in) for a ``lhs == rhs`` condition."""
    tree = ast.parse(src.strip(), mode="eval").body
    if isinstance(tree, ast.Compare) and len(tree.ops) == 1 and isinstance(tree.ops[0], ast.Eq):
        diff = ast.BinOp(tree.left, ast.Sub(), tree.comparators[0])
        try:
            c = compile_expr(ast.unparse(diff), variables, fold_env)
        except EvalError:
            return None, frozenset()
        return c, frozenset(v for v in c.names if _linear(diff, v) == "lin")
    return None, frozenset()


def parse_template(data: dict, template_id: str, path: str = "") -> Template:
    tid = template_id
    for key in ("question_annotated", "answer_annotated"):
        if not isinstance(data.get(key), str):
            raise _err(tid, f"missing or non-text field '{key}'")
    qa = data["question_annotated"]
    lines = qa.split("\n")
    starts = [i for i, l in enumerate(lines) if _SECTION_RE.match(l.strip())]
    if not starts or _SECTION_RE.match(lines[starts[0]].strip()).group(1) != "init":
        raise _err(tid, "question_annotated has no '#init:' section after the question text")
    body = "\n".join(lines[:starts[0]])

    init_items, cond_items, answer_src, answer_line = [], [], None, None
    section = None
    for i in range(starts[0], len(lines)):
        raw = lines[i]
        s = raw.strip()
        line = Line("question_annotated", i + 1, raw)
        if not s:
            continue
        m = _SECTION_RE.match(s)
        if m:
            name, rest = m.group(1), m.group(2).strip()
            if section == "answer":
                raise _err(tid, "text after the #answer line", line)
            if name == "answer":
                if not rest:
                    raise _err(tid, "#answer has no expression", line)
                if rest.startswith("{") and rest.endswith("}") and rest.count("{") == 1:
                    rest = rest[1:-1].strip()
                answer_src, answer_line = rest, line
            elif rest:
                raise _err(tid, f"unexpected text after #{name}", line)
            section = name
            continue
        if section == "answer":
            raise _err(tid, "text after the #answer line", line)
        if not s.startswith("-"):
            raise _err(tid, "expected a line starting with '- '", line)
        item = s[1:].strip()
        if not item:
            raise _err(tid, "empty item", line)
        (init_items if section == "init" else cond_items).append((item, line))
    if answer_src is None:
        raise _err(tid, "question_annotated has no '#answer:' line")

    targets = []
    parsed_init = []
    seen = {}
    for item, line in init_items:
        m = _TARGETS_RE.match(item)
        if not m:
            raise _err(tid, "expected `name = expression` (or `$name = ...`, `a, b = ...`)", line)
        names = [re.sub(r"\s+", "", t) for t in m.group(1).split(",")]
        tnames = tuple(t.lstrip("$") for t in names)
        key = (tuple(names), "".join(m.group(2).split()))
        if key in seen.values():
            continue  # an identical repeated definition (upstream p1/0088) changes nothing
        for t in tnames:
            if t.startswith("__") or t.endswith("__"):
                raise _err(tid, f"dunder name '{t}' is not allowed", line)
            if t in targets or tnames.count(t) > 1:
                raise _err(tid, f"variable '{t}' is defined twice", line)
            targets.append(t)
            seen[t] = key
        parsed_init.append((tnames, tuple(t.startswith("$") for t in names), m.group(2), line))
    variables = frozenset(targets)

    fold = Env({})  # one work budget for all the constant parts of the template
    init = tuple(InitStmt(t, num, _compile(tid, src, variables, line, fold), line,
                          *_domain(strip_dollars(src), variables, fold)) for t, num, src, line in parsed_init)
    conditions = tuple(Condition(_compile(tid, src, variables, line, fold, False), line,
                                 *_eq_diff(strip_dollars(src), variables, fold)) for src, line in cond_items)
    answer_expr = _compile(tid, answer_src, variables, answer_line, fold, False)
    body_parts = _parse_body(tid, body, variables)
    solution, final_hole = _parse_solution(tid, data["answer_annotated"], variables, fold)
    id_orig = data.get("id_orig")
    return Template(
        template_id=tid, path=str(path), question=str(data.get("question", "")),
        answer=str(data.get("answer", "")), id_orig=id_orig if isinstance(id_orig, int) else None,
        body=body_parts, init=init, conditions=conditions, answer_expr=answer_expr,
        answer_line=answer_line, solution=solution, final_hole=final_hole)


def load_template(path, template_id: str | None = None) -> Template:
    """Parse one template file; ``template_id`` defaults to ``<dir name>/<file stem>``."""
    p = Path(path)
    tid = template_id or f"{p.parent.name}/{p.stem}"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _err(tid, f"cannot read {p}: {e}") from None
    if not isinstance(data, dict):
        raise _err(tid, f"{p} does not hold a JSON object")
    return parse_template(data, tid, str(p))


def load_template_set(directory, name: str | None = None) -> list[Template]:
    """All ``*.json`` templates of a directory, sorted by id (``<name>/<stem>``; name defaults to the dir name)."""
    d = Path(directory)
    name = name or d.name
    return sorted((load_template(p, f"{name}/{p.stem}") for p in d.glob("*.json")),
                  key=lambda t: t.template_id)
