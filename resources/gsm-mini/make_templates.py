"""Generate the gsm-mini template files (templates/NNNN.json).

gsm-mini is a small set of one- and two-step grade-school word problems in the
GSM-Symbolic annotated template format. It exists because the project's
default model (gemma-3-270m, base) solves almost none of GSM8K / GSM-Symbolic,
so there is nothing for CCA to amplify there; on gsm-mini the model is right
on some instances and wrong on others.

Each template below is written once (annotated question, #init, #conditions,
#answer, annotated solution). This script renders the default question and
default solution from the slot defaults, so that `question` / `answer` are
exactly what the defaults render to, checks that the defaults satisfy the
conditions and the ranges, that every <<a op b=c>> annotation is right, that
the numeric variables have at least MIN_NUMERIC_COMBOS valid combinations
(names add more distinct questions on top), and writes one JSON file per
template (NNNN = position in TEMPLATES).

Do not reorder TEMPLATES: the file number is the template id, and
cca.templates seeds each template's draws with its id, so reordering changes
every drawn instance and invalidates the accuracies recorded in SOURCE.md.

Run from anywhere:  python resources/gsm-mini/make_templates.py
Only the Python standard library is needed.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "templates"


# Each entry: q = annotated question (slots {var,default}), init = #init lines,
# cond = #conditions lines, ans = #answer expression, sol = annotated solution
# without the final "#### {...}" line (added from `ans`).
def T(q: str, init: list[str], ans: str, sol: str, cond: tuple[str, ...] = ()) -> dict:
    return dict(q=q, init=list(init), cond=list(cond), ans=ans, sol=sol)


F_ = "name = sample(names_female)"
M_ = "name = sample(names_male)"

# Solutions follow the style of exemplars.jsonl: restate the facts, then ", so ... = ...".
TEMPLATES: list[dict] = [
    # ---------------- 0000-0007 one step: addition ----------------
    T("{name,Lily} has {a,6} apples. Her friend gives her {b,3} more apples. How many apples does {name,Lily} have now?",
      [F_, "$a = range(2, 10)", "$b = range(2, 10)"], "a + b",
      "{name} has {a} apples and gets {b} more, so she has {a} + {b} = <<{a}+{b}={a+b}>>{a+b} apples now."),
    T("There are {a,5} red balloons and {b,4} blue balloons at the party. How many balloons are there in total?",
      ["$a = range(2, 10)", "$b = range(2, 10)"], "a + b",
      "There are {a} red balloons and {b} blue balloons, so there are {a} + {b} = <<{a}+{b}={a+b}>>{a+b} balloons in total."),
    T("{name,Omar} has {a,7} red cars and {b,2} blue cars. How many cars does he have altogether?",
      [M_, "$a = range(2, 10)", "$b = range(2, 10)"], "a + b",
      "{name} has {a} red cars and {b} blue cars, so he has {a} + {b} = <<{a}+{b}={a+b}>>{a+b} cars altogether."),
    T("There were {a,12} people on a bus. At the next stop, {b,5} more people got on. How many people are on the bus now?",
      ["$a = range(10, 20)", "$b = range(2, 10)"], "a + b",
      "There were {a} people and {b} more got on, so there are {a} + {b} = <<{a}+{b}={a+b}>>{a+b} people on the bus now."),
    T("{name,Ethan} scored {a,15} points in the first game and {b,12} points in the second game. How many points did he score in all?",
      [M_, "$a = range(10, 20)", "$b = range(10, 20)"], "a + b",
      "{name} scored {a} points and {b} points, so he scored {a} + {b} = <<{a}+{b}={a+b}>>{a+b} points in all."),
    T("{name,Mia} is {a,9} years old. Her brother is {b,4} years older than her. How old is her brother?",
      [F_, "$a = range(5, 15)", "$b = range(2, 8)"], "a + b",
      "{name} is {a} and her brother is {b} years older, so he is {a} + {b} = <<{a}+{b}={a+b}>>{a+b} years old."),
    T("A notebook costs ${a,4} and a pen costs ${b,3}. How much do the notebook and the pen cost together?",
      ["$a = range(2, 10)", "$b = range(2, 10)"], "a + b",
      "The notebook costs ${a} and the pen costs ${b}, so together they cost {a} + {b} = $<<{a}+{b}={a+b}>>{a+b}."),
    T("{name,Ivy} read {a,8} pages on Monday and {b,6} pages on Tuesday. How many pages did she read in total?",
      [F_, "$a = range(2, 12)", "$b = range(2, 12)"], "a + b",
      "{name} read {a} pages and {b} pages, so she read {a} + {b} = <<{a}+{b}={a+b}>>{a+b} pages in total."),
    # ---------------- 0008-0012 one step: subtraction ----------------
    T("There are {a,9} {bird,birds} on a fence. {b,3} {bird,birds} fly away. How many {bird,birds} are left on the fence?",
      ["bird = sample([\"birds\", \"crows\", \"sparrows\", \"pigeons\"])", "$a = range(5, 13)", "$b = range(2, 5)"], "a - b",
      "There were {a} {bird} and {b} flew away, so there are {a} - {b} = <<{a}-{b}={a-b}>>{a-b} {bird} left on the fence.", ("a > b",)),
    T("{name1,Jack} has {a,12} marbles and {name2,Noah} has {b,9} marbles. How many more marbles does {name1,Jack} have than {name2,Noah}?",
      ["name1, name2 = sample(names_male, 2)", "$a = range(8, 20)", "$b = range(2, 10)"], "a - b",
      "{name1} has {a} marbles and {name2} has {b}, so {name1} has {a} - {b} = <<{a}-{b}={a-b}>>{a-b} more marbles.", ("a > b",)),
    T("{name,Ava} pays with a ${a,20} bill for a toy that costs ${b,13}. How much change does she get?",
      [F_, "$a = sample([10, 15, 20, 25])", "$b = range(2, 20)"], "a - b",
      "{name} pays ${a} for a toy that costs ${b}, so she gets {a} - {b} = $<<{a}-{b}={a-b}>>{a-b} in change.", ("a > b",)),
    T("{name,Sophia} has ${a,12}. She spends ${b,5} on a book. How much money does she have left?",
      [F_, "$a = range(6, 15)", "$b = range(2, 6)"], "a - b",
      "{name} has ${a} and spends ${b}, so she has {a} - {b} = $<<{a}-{b}={a-b}>>{a-b} left.", ("a > b",)),
    T("{name,Leo} had {a,8} balloons. {b,3} of them popped. How many balloons does {name,Leo} have left?",
      [M_, "$a = range(5, 13)", "$b = range(2, 5)"], "a - b",
      "{name} had {a} balloons and {b} popped, so he has {a} - {b} = <<{a}-{b}={a-b}>>{a-b} balloons left.", ("a > b",)),
    # ---------------- 0013-0020 one step: multiplication (0019: doubling) ----------------
    T("{name,Liam} buys {a,4} packs of pencils. Each pack has {b,3} pencils. How many pencils does he buy?",
      [M_, "$a = range(2, 10)", "$b = range(2, 9)"], "a * b",
      "{name} buys {a} packs with {b} pencils each, so he buys {a} * {b} = <<{a}*{b}={a*b}>>{a*b} pencils."),
    T("A classroom has {a,5} rows of desks with {b,4} desks in each row. How many desks are there in the classroom?",
      ["$a = range(2, 10)", "$b = range(2, 9)"], "a * b",
      "There are {a} rows with {b} desks each, so there are {a} * {b} = <<{a}*{b}={a*b}>>{a*b} desks."),
    T("{name,Lucas} runs {a,3} miles every day. How many miles does he run in {b,5} days?",
      [M_, "$a = range(2, 10)", "$b = range(2, 9)"], "a * b",
      "{name} runs {a} miles a day for {b} days, so he runs {a} * {b} = <<{a}*{b}={a*b}>>{a*b} miles."),
    T("{name,Kate} has {a,3} vases with {b,4} flowers in each vase. How many flowers are there in the vases?",
      [F_, "$a = range(2, 10)", "$b = range(2, 9)"], "a * b",
      "There are {a} vases with {b} flowers each, so there are {a} * {b} = <<{a}*{b}={a*b}>>{a*b} flowers."),
    T("{name,Grace} has {a,8} books. Her sister has {k,2} times as many books as {name,Grace}. How many books does her sister have?",
      [F_, "$a = range(2, 30)", "$k = sample([2, 3])"], "k * a",
      "{name} has {a} books and her sister has {k} times as many, so her sister has {a} * {k} = <<{a}*{k}={k*a}>>{k*a} books."),
    T("Each box holds {a,5} crayons. How many crayons are in {b,3} boxes?",
      ["$a = range(2, 10)", "$b = range(2, 9)"], "a * b",
      "Each box holds {a} crayons and there are {b} boxes, so there are {a} * {b} = <<{a}*{b}={a*b}>>{a*b} crayons."),
    T("{name,Julia} walks {a,7} blocks to school and then walks the same way back home. How many blocks does she walk in total?",
      [F_, "$a = range(2, 52)"], "2 * a",
      "{name} walks {a} blocks there and {a} blocks back, so she walks {a} + {a} = <<{a}+{a}={2*a}>>{2*a} blocks in total."),
    T("One ticket costs ${a,3}. How much do {b,4} tickets cost?",
      ["$a = range(2, 10)", "$b = range(2, 9)"], "a * b",
      "One ticket costs ${a}, so {b} tickets cost {b} * {a} = $<<{b}*{a}={a*b}>>{a*b}."),
    # ---------------- 0021 one step: division ----------------
    T("{name,Zoe} has {a,12} cookies and shares them equally among {b,3} friends. How many cookies does each friend get?",
      [F_, "$a = range(4, 50)", "$b = range(2, 6)"], "a // b",
      "{name} shares {a} cookies among {b} friends, so each friend gets {a} / {b} = <<{a}/{b}={a//b}>>{a//b} cookies.",
      ("is_int(a / b)",)),
    # ---------------- 0022-0026 one step, mixed (added in the second calibration round) ----------------
    T("{name,Ben} plants {a,4} rows of trees with {b,6} trees in each row. How many trees does he plant?",
      [M_, "$a = range(2, 10)", "$b = range(2, 9)"], "a * b",
      "{name} plants {a} rows with {b} trees each, so he plants {a} * {b} = <<{a}*{b}={a*b}>>{a*b} trees."),
    T("{name,Sara} has {a,5} pencils in her bag and {b,4} pencils on her desk. How many pencils does she have in all?",
      [F_, "$a = range(2, 10)", "$b = range(2, 10)"], "a + b",
      "{name} has {a} pencils in her bag and {b} on her desk, so she has {a} + {b} = <<{a}+{b}={a+b}>>{a+b} pencils in all."),
    T("There are {a,8} ducks in a pond. {b,3} more ducks join them. How many ducks are in the pond now?",
      ["$a = range(2, 12)", "$b = range(2, 10)"], "a + b",
      "There were {a} ducks and {b} more joined, so there are {a} + {b} = <<{a}+{b}={a+b}>>{a+b} ducks in the pond now."),
    T("{name,Maya} bakes {a,3} trays of cookies with {b,6} cookies on each tray. How many cookies does she bake?",
      [F_, "$a = range(2, 10)", "$b = range(2, 9)"], "a * b",
      "{name} bakes {a} trays with {b} cookies each, so she bakes {a} * {b} = <<{a}*{b}={a*b}>>{a*b} cookies."),
    T("{name,Paul} had {a,9} marbles. He lost {b,4} of them. How many marbles does he have now?",
      [M_, "$a = range(5, 13)", "$b = range(2, 5)"], "a - b",
      "{name} had {a} marbles and lost {b}, so he has {a} - {b} = <<{a}-{b}={a-b}>>{a-b} marbles now.", ("a > b",)),
    # ---------------- 0027-0031 two steps ----------------
    T("{name,Ella} has {a,5} apples. She buys {b,4} more apples and then eats {c,2} of them. How many apples does she have now?",
      [F_, "$a = range(2, 10)", "$b = range(2, 10)", "$c = range(2, 5)"], "a + b - c",
      "{name} has {a} apples and buys {b} more, so she has {a} + {b} = <<{a}+{b}={a+b}>>{a+b} apples.\n"
      "She eats {c}, so she has {a+b} - {c} = <<{a+b}-{c}={a+b-c}>>{a+b-c} apples now."),
    T("{name,Ruby} buys {a,3} pens for ${b,2} each and a notebook for ${c,5}. How much does she spend in total?",
      [F_, "$a = range(2, 5)", "$b = range(2, 5)", "$c = range(2, 10)"], "a * b + c",
      "{name} buys {a} pens for ${b} each, so the pens cost {a} * {b} = $<<{a}*{b}={a*b}>>{a*b}.\n"
      "She also buys a notebook for ${c}, so she spends {a*b} + {c} = $<<{a*b}+{c}={a*b+c}>>{a*b+c} in total."),
    T("{name,Owen} had ${a,20}. He bought {b,3} toys that cost ${c,4} each. How much money does he have left?",
      [M_, "$a = range(15, 30)", "$b = range(2, 4)", "$c = range(2, 5)"], "a - b * c",
      "{name} bought {b} toys for ${c} each, so the toys cost {b} * {c} = $<<{b}*{c}={b*c}>>{b*c}.\n"
      "He had ${a}, so he has {a} - {b*c} = $<<{a}-{b*c}={a-b*c}>>{a-b*c} left.", ("b * c < a",)),
    T("{name,Adam} has {a,7} red pens and {b,5} blue pens. He gives away {c,3} pens. How many pens does he have left?",
      [M_, "$a = range(2, 10)", "$b = range(2, 10)", "$c = range(2, 5)"], "a + b - c",
      "{name} has {a} red pens and {b} blue pens, so he has {a} + {b} = <<{a}+{b}={a+b}>>{a+b} pens.\n"
      "He gives away {c}, so he has {a+b} - {c} = <<{a+b}-{c}={a+b-c}>>{a+b-c} pens left."),
    T("{name,Rose} has {a,3} red beads, {b,4} blue beads and {c,2} green beads. How many beads does she have in total?",
      [F_, "$a = range(2, 8)", "$b = range(2, 8)", "$c = range(2, 8)"], "a + b + c",
      "{name} has {a} red beads and {b} blue beads, so she has {a} + {b} = <<{a}+{b}={a+b}>>{a+b} red and blue beads.\n"
      "She also has {c} green beads, so she has {a+b} + {c} = <<{a+b}+{c}={a+b+c}>>{a+b+c} beads in total."),
]

SLOT_RE = re.compile(r"\{(\w+)\s*,\s*([^{}]*?)\}")
EXPR_RE = re.compile(r"\{([^{}]+)\}")
ANNOT_RE = re.compile(r"<<([^<>]*)>>")


def _defaults(q: str) -> dict:
    env: dict = {}
    for var, default in SLOT_RE.findall(q):
        val: object = default.strip()
        if re.fullmatch(r"-?\d+", str(val)):
            val = int(val)
        if var in env and env[var] != val:
            raise ValueError(f"slot {var} has two defaults: {env[var]!r} / {val!r}")
        env[var] = val
    return env


def _fmt(x: object) -> str:
    if isinstance(x, float) and x.is_integer():
        x = int(x)
    return str(x)


def render_question(q: str) -> str:
    return SLOT_RE.sub(lambda m: m.group(2).strip(), q)


def render_expr_text(text: str, env: dict) -> str:
    return EXPR_RE.sub(lambda m: _fmt(eval(m.group(1), {}, dict(env))), text)


_HELPERS = {
    "is_int": lambda x: float(x).is_integer(),
    "divides": lambda a, b: a % b == 0,
    "int": int,
}


def _check_ranges(t: dict, env: dict) -> None:
    for line in t["init"]:
        m = re.fullmatch(r"\$(\w+) = range\((.*)\)", line)
        if m:
            var, args = m.group(1), [int(x) for x in m.group(2).split(",")]
            if env[var] not in range(*args):
                raise ValueError(f"default {var}={env[var]} not in range{tuple(args)}")
        m = re.fullmatch(r"\$(\w+) = sample\((\[.*\])\)", line)
        if m:
            var, lst = m.group(1), eval(m.group(2))
            if env[var] not in lst:
                raise ValueError(f"default {var}={env[var]} not in {lst}")


MIN_NUMERIC_COMBOS = 20


def numeric_combos(t: dict) -> int:
    """How many assignments of the numeric ($) variables satisfy the conditions."""
    domains = {}
    for line in t["init"]:
        m = re.fullmatch(r"\$(\w+) = (range\(.*\)|sample\(\[.*\]\))", line)
        if m:
            expr = m.group(2)
            domains[m.group(1)] = list(eval(expr[len("sample("):-1]) if expr.startswith("sample") else eval(expr))
    names = list(domains)
    return sum(
        all(eval(c, dict(_HELPERS), dict(zip(names, vals))) for c in t["cond"])
        for vals in itertools.product(*(domains[v] for v in names))
    )


def build(t: dict, idx: int) -> dict:
    env = _defaults(t["q"])
    _check_ranges(t, env)
    for c in t["cond"]:
        if not eval(c, dict(_HELPERS), dict(env)):
            raise ValueError(f"template {idx}: defaults violate condition {c}")
    if numeric_combos(t) < MIN_NUMERIC_COMBOS:
        raise ValueError(f"template {idx}: only {numeric_combos(t)} numeric combinations (< {MIN_NUMERIC_COMBOS})")
    ans_val = eval(t["ans"], dict(_HELPERS), dict(env))
    sol_annot = t["sol"] + "\n#### {" + t["ans"] + "}"
    answer = render_expr_text(sol_annot, env)
    # check every calculator annotation
    for ann in ANNOT_RE.findall(answer):
        lhs, rhs = ann.split("=")
        if float(eval(lhs)) != float(rhs):
            raise ValueError(f"template {idx}: bad annotation <<{ann}>>")
    if answer.rsplit("#### ", 1)[1] != _fmt(ans_val):
        raise ValueError(f"template {idx}: final line mismatch")
    qa = t["q"] + "\n\n#init:\n" + "\n".join(f"- {x}" for x in t["init"]) + "\n"
    if t["cond"]:
        qa += "\n#conditions:\n" + "\n".join(f"- {x}" for x in t["cond"]) + "\n"
    qa += "\n#answer: " + t["ans"]
    return {
        "question": render_question(t["q"]),
        "answer": answer,
        "id_orig": None,
        "id_shuffled": idx,
        "question_annotated": qa,
        "answer_annotated": sol_annot,
    }


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for old in OUT_DIR.glob("*.json"):
        old.unlink()
    for i, t in enumerate(TEMPLATES):
        d = build(t, i)
        (OUT_DIR / f"{i:04d}.json").write_text(json.dumps(d, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(TEMPLATES)} templates to {OUT_DIR}")


if __name__ == "__main__":
    main()
