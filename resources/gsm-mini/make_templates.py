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
conditions and the ranges, and writes one JSON file per template.

Run from anywhere:  python resources/gsm-mini/make_templates.py
Only the Python standard library is needed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "templates"

# Each entry: q = annotated question (slots {var,default}), init = #init lines,
# cond = #conditions lines, ans = #answer expression, sol = annotated solution
# without the final "#### {...}" line (added from `ans`).
TEMPLATES: list[dict] = [
    # ---------------- one step: addition ----------------
    dict(
        q="{name,Lily} has {a,6} apples. Her friend gives her {b,7} more apples. How many apples does {name,Lily} have now?",
        init=["name = sample(names_female)", "$a = range(2, 12)", "$b = range(2, 12)"],
        cond=[],
        ans="a + b",
        sol="{name} has {a} + {b} = <<{a}+{b}={a+b}>>{a+b} apples now.",
    ),
    dict(
        q="There are {a,23} red balloons and {b,14} blue balloons at the party. How many balloons are there in total?",
        init=["$a = range(10, 40)", "$b = range(10, 40)"],
        cond=[],
        ans="a + b",
        sol="There are {a} + {b} = <<{a}+{b}={a+b}>>{a+b} balloons in total.",
    ),
    dict(
        q="{name,Omar} read for {a,25} minutes in the morning and {b,30} minutes in the evening. How many minutes did he read in total?",
        init=["name = sample(names_male)", "$a = range(10, 50, 5)", "$b = range(10, 50, 5)"],
        cond=[],
        ans="a + b",
        sol="{name} read for {a} + {b} = <<{a}+{b}={a+b}>>{a+b} minutes in total.",
    ),
    dict(
        q="There were {a,12} people on a bus. At the next stop, {b,8} more people got on. How many people are on the bus now?",
        init=["$a = range(5, 30)", "$b = range(2, 10)"],
        cond=[],
        ans="a + b",
        sol="There are {a} + {b} = <<{a}+{b}={a+b}>>{a+b} people on the bus now.",
    ),
    dict(
        q="{name,Ethan} scored {a,15} points in the first game and {b,21} points in the second game. How many points did he score in all?",
        init=["name = sample(names_male)", "$a = range(10, 40)", "$b = range(10, 40)"],
        cond=[],
        ans="a + b",
        sol="{name} scored {a} + {b} = <<{a}+{b}={a+b}>>{a+b} points in all.",
    ),
    dict(
        q="{name,Mia} is {a,9} years old. Her brother is {b,4} years older than her. How old is her brother?",
        init=["name = sample(names_female)", "$a = range(5, 20)", "$b = range(2, 10)"],
        cond=[],
        ans="a + b",
        sol="Her brother is {a} + {b} = <<{a}+{b}={a+b}>>{a+b} years old.",
    ),
    # ---------------- one step: subtraction ----------------
    dict(
        q="{name,Emma} had {a,34} stickers. She gave {b,12} stickers to her brother. How many stickers does she have left?",
        init=["name = sample(names_female)", "$a = range(20, 60)", "$b = range(5, 20)"],
        cond=["a > b"],
        ans="a - b",
        sol="{name} has {a} - {b} = <<{a}-{b}={a-b}>>{a-b} stickers left.",
    ),
    dict(
        q="There are {a,17} birds on a tree. {b,6} birds fly away. How many birds are left on the tree?",
        init=["$a = range(10, 30)", "$b = range(2, 10)"],
        cond=["a > b"],
        ans="a - b",
        sol="There are {a} - {b} = <<{a}-{b}={a-b}>>{a-b} birds left on the tree.",
    ),
    dict(
        q="A book has {a,80} pages. {name,Chloe} has read {b,35} pages. How many pages does she have left to read?",
        init=["name = sample(names_female)", "$a = range(40, 100, 10)", "$b = range(10, 40, 5)"],
        cond=["a > b"],
        ans="a - b",
        sol="{name} has {a} - {b} = <<{a}-{b}={a-b}>>{a-b} pages left to read.",
    ),
    dict(
        q="{name1,Jack} has {a,28} marbles and {name2,Noah} has {b,19} marbles. How many more marbles does {name1,Jack} have than {name2,Noah}?",
        init=["name1, name2 = sample(names_male, 2)", "$a = range(15, 40)", "$b = range(5, 25)"],
        cond=["a > b"],
        ans="a - b",
        sol="{name1} has {a} - {b} = <<{a}-{b}={a-b}>>{a-b} more marbles than {name2}.",
    ),
    dict(
        q="{name,Ava} pays with a ${a,20} bill for a toy that costs ${b,13}. How much change does she get?",
        init=["name = sample(names_female)", "$a = sample([10, 20, 50])", "$b = range(3, 45)"],
        cond=["a > b"],
        ans="a - b",
        sol="{name} gets {a} - {b} = $<<{a}-{b}={a-b}>>{a-b} in change.",
    ),
    dict(
        q="{name,Sophia} has ${a,15}. She wants to buy a bike that costs ${b,42}. How much more money does she need?",
        init=["name = sample(names_female)", "$a = range(5, 40)", "$b = range(20, 60)"],
        cond=["b > a"],
        ans="b - a",
        sol="{name} needs {b} - {a} = $<<{b}-{a}={b-a}>>{b-a} more.",
    ),
    # ---------------- one step: multiplication ----------------
    dict(
        q="{name,Liam} buys {a,4} packs of pencils. Each pack has {b,6} pencils. How many pencils does he buy?",
        init=["name = sample(names_male)", "$a = range(2, 10)", "$b = range(2, 10)"],
        cond=[],
        ans="a * b",
        sol="{name} buys {a} * {b} = <<{a}*{b}={a*b}>>{a*b} pencils.",
    ),
    dict(
        q="A classroom has {a,5} rows of desks with {b,7} desks in each row. How many desks are there in the classroom?",
        init=["$a = range(2, 10)", "$b = range(2, 10)"],
        cond=[],
        ans="a * b",
        sol="There are {a} * {b} = <<{a}*{b}={a*b}>>{a*b} desks in the classroom.",
    ),
    dict(
        q="{name,Lucas} runs {a,3} miles every day. How many miles does he run in {b,5} days?",
        init=["name = sample(names_male)", "$a = range(2, 10)", "$b = range(2, 8)"],
        cond=[],
        ans="a * b",
        sol="{name} runs {a} * {b} = <<{a}*{b}={a*b}>>{a*b} miles.",
    ),
    dict(
        q="A farmer has {a,7} {animal,cow}s. Each {animal,cow} has 4 legs. How many legs do the {animal,cow}s have in total?",
        init=["animal = sample([\"cow\", \"horse\", \"goat\", \"pig\", \"dog\"])", "$a = range(2, 20)"],
        cond=[],
        ans="4 * a",
        sol="The {animal}s have {a} * 4 = <<{a}*4={4*a}>>{4*a} legs in total.",
    ),
    dict(
        q="{name,Grace} has {a,8} books. Her sister has twice as many books as {name,Grace}. How many books does her sister have?",
        init=["name = sample(names_female)", "$a = range(3, 25)"],
        cond=[],
        ans="2 * a",
        sol="Her sister has {a} * 2 = <<{a}*2={2*a}>>{2*a} books.",
    ),
    dict(
        q="{name,Henry} saves ${a,6} each week. How much money will he have saved after {b,4} weeks?",
        init=["name = sample(names_male)", "$a = range(2, 10)", "$b = range(2, 10)"],
        cond=[],
        ans="a * b",
        sol="{name} will have saved {a} * {b} = $<<{a}*{b}={a*b}>>{a*b}.",
    ),
    # ---------------- one step: division ----------------
    dict(
        q="{name,Zoe} has {a,24} cookies and shares them equally among {b,4} friends. How many cookies does each friend get?",
        init=["name = sample(names_female)", "$a = range(6, 50)", "$b = range(2, 7)"],
        cond=["is_int(a / b)"],
        ans="a // b",
        sol="Each friend gets {a} / {b} = <<{a}/{b}={a//b}>>{a//b} cookies.",
    ),
    dict(
        q="{name,Ben} had {a,18} candies and ate half of them. How many candies does he have left?",
        init=["name = sample(names_male)", "$a = range(6, 60)"],
        cond=["is_int(a / 2)"],
        ans="a // 2",
        sol="{name} has {a} / 2 = <<{a}/2={a//2}>>{a//2} candies left.",
    ),
    dict(
        q="A teacher puts {a,30} students into groups of {b,5}. How many groups are there?",
        init=["$a = range(10, 60)", "$b = range(2, 7)"],
        cond=["is_int(a / b)"],
        ans="a // b",
        sol="There are {a} / {b} = <<{a}/{b}={a//b}>>{a//b} groups.",
    ),
    # ---------------- two steps ----------------
    dict(
        q="{name,Ella} has {a,5} apples. She buys {b,4} more apples and then eats {c,2} of them. How many apples does she have now?",
        init=["name = sample(names_female)", "$a = range(3, 15)", "$b = range(2, 10)", "$c = range(1, 5)"],
        cond=["c < a + b"],
        ans="a + b - c",
        sol=(
            "After buying, {name} has {a} + {b} = <<{a}+{b}={a+b}>>{a+b} apples.\n"
            "After eating, she has {a+b} - {c} = <<{a+b}-{c}={a+b-c}>>{a+b-c} apples."
        ),
    ),
    dict(
        q="{name,Ruby} buys {a,3} pens for ${b,2} each and a notebook for ${c,5}. How much does she spend in total?",
        init=["name = sample(names_female)", "$a = range(2, 6)", "$b = range(2, 6)", "$c = range(2, 10)"],
        cond=[],
        ans="a * b + c",
        sol=(
            "The pens cost {a} * {b} = $<<{a}*{b}={a*b}>>{a*b}.\n"
            "In total she spends {a*b} + {c} = $<<{a*b}+{c}={a*b+c}>>{a*b+c}."
        ),
    ),
    dict(
        q="{name,Owen} had ${a,30}. He bought {b,3} toys that cost ${c,4} each. How much money does he have left?",
        init=["name = sample(names_male)", "$a = range(20, 50)", "$b = range(2, 6)", "$c = range(2, 6)"],
        cond=["b * c < a"],
        ans="a - b * c",
        sol=(
            "The toys cost {b} * {c} = $<<{b}*{c}={b*c}>>{b*c}.\n"
            "{name} has {a} - {b*c} = $<<{a}-{b*c}={a-b*c}>>{a-b*c} left."
        ),
    ),
    dict(
        q="There are {a,12} boys and {b,8} girls in a class. The teacher splits them into teams of {c,4}. How many teams are there?",
        init=["$a = range(6, 20)", "$b = range(6, 20)", "$c = range(2, 6)"],
        cond=["is_int((a + b) / c)"],
        ans="(a + b) // c",
        sol=(
            "There are {a} + {b} = <<{a}+{b}={a+b}>>{a+b} children.\n"
            "So there are {a+b} / {c} = <<{a+b}/{c}={(a+b)//c}>>{(a+b)//c} teams."
        ),
    ),
    dict(
        q="{name,Nora} picks {a,6} flowers on Monday and twice as many flowers on Tuesday. How many flowers does she pick in total?",
        init=["name = sample(names_female)", "$a = range(3, 20)"],
        cond=[],
        ans="a + 2 * a",
        sol=(
            "On Tuesday she picks {a} * 2 = <<{a}*2={2*a}>>{2*a} flowers.\n"
            "In total she picks {a} + {2*a} = <<{a}+{2*a}={3*a}>>{3*a} flowers."
        ),
    ),
    dict(
        q="A baker makes {a,25} cakes. He sells {b,8} cakes in the morning and {c,6} cakes in the afternoon. How many cakes are left?",
        init=["$a = range(20, 40)", "$b = range(2, 10)", "$c = range(2, 10)"],
        cond=["b + c < a"],
        ans="a - b - c",
        sol=(
            "After the morning, {a} - {b} = <<{a}-{b}={a-b}>>{a-b} cakes are left.\n"
            "After the afternoon, {a-b} - {c} = <<{a-b}-{c}={a-b-c}>>{a-b-c} cakes are left."
        ),
    ),
    dict(
        q="{name,Adam} has {a,7} red pens and {b,5} blue pens. He gives away {c,3} pens. How many pens does he have left?",
        init=["name = sample(names_male)", "$a = range(3, 15)", "$b = range(3, 15)", "$c = range(1, 6)"],
        cond=["c < a + b"],
        ans="a + b - c",
        sol=(
            "{name} has {a} + {b} = <<{a}+{b}={a+b}>>{a+b} pens.\n"
            "After giving some away, he has {a+b} - {c} = <<{a+b}-{c}={a+b-c}>>{a+b-c} pens left."
        ),
    ),
    dict(
        q="{name,Alice} has {a,3} bags with {b,5} marbles in each bag. She finds {c,4} more marbles. How many marbles does she have now?",
        init=["name = sample(names_female)", "$a = range(2, 6)", "$b = range(2, 10)", "$c = range(2, 10)"],
        cond=[],
        ans="a * b + c",
        sol=(
            "The bags hold {a} * {b} = <<{a}*{b}={a*b}>>{a*b} marbles.\n"
            "Now she has {a*b} + {c} = <<{a*b}+{c}={a*b+c}>>{a*b+c} marbles."
        ),
    ),
    dict(
        q="{name1,Sam} has {a,9} stamps. {name2,Leo} has {b,4} more stamps than {name1,Sam}. How many stamps do they have together?",
        init=["name1, name2 = sample(names_male, 2)", "$a = range(3, 20)", "$b = range(2, 10)"],
        cond=[],
        ans="a + (a + b)",
        sol=(
            "{name2} has {a} + {b} = <<{a}+{b}={a+b}>>{a+b} stamps.\n"
            "Together they have {a} + {a+b} = <<{a}+{a+b}={2*a+b}>>{2*a+b} stamps."
        ),
    ),
    # ---------------- extra one-step variants ----------------
    dict(
        q="A box holds {a,8} crayons. How many crayons are in {b,6} boxes?",
        init=["$a = range(2, 13)", "$b = range(2, 10)"],
        cond=[],
        ans="a * b",
        sol="There are {a} * {b} = <<{a}*{b}={a*b}>>{a*b} crayons in {b} boxes.",
    ),
    dict(
        q="{name,Ivy} walks {a,7} blocks to school and then walks the same way back home. How many blocks does she walk in total?",
        init=["name = sample(names_female)", "$a = range(3, 25)"],
        cond=[],
        ans="2 * a",
        sol="{name} walks {a} + {a} = <<{a}+{a}={2*a}>>{2*a} blocks in total.",
    ),
    dict(
        q="{name,Max} needs {a,20} oranges. Oranges come in bags of {b,5}. How many bags does he need to buy?",
        init=["name = sample(names_male)", "$a = range(10, 60)", "$b = range(2, 7)"],
        cond=["is_int(a / b)"],
        ans="a // b",
        sol="{name} needs {a} / {b} = <<{a}/{b}={a//b}>>{a//b} bags.",
    ),
    dict(
        q="A jar had {a,45} jelly beans. {name,Ruth} ate {b,9} of them. How many jelly beans are left in the jar?",
        init=["name = sample(names_female)", "$a = range(30, 70)", "$b = range(5, 20)"],
        cond=["a > b"],
        ans="a - b",
        sol="There are {a} - {b} = <<{a}-{b}={a-b}>>{a-b} jelly beans left in the jar.",
    ),
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


def build(t: dict, idx: int) -> dict:
    env = _defaults(t["q"])
    _check_ranges(t, env)
    for c in t["cond"]:
        if not eval(c, dict(_HELPERS), dict(env)):
            raise ValueError(f"template {idx}: defaults violate condition {c}")
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
