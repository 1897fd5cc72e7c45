"""Tests of the GSM-Symbolic template engine (cca.templates)."""
from __future__ import annotations

import json
import re
import time
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest

from cca.templates import (KNOWN_UPSTREAM_DEFECTS, UNDRAWABLE_UPSTREAM, TemplateError, check_defaults,
                           default_problems, draw_instances, format_answer, instances_frame,
                           load_template, load_template_set, verify_instance)
from cca.templates.defaults import word_diff

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = ROOT / "resources" / "gsm-symbolic" / "templates"
MINI = ROOT / "resources" / "gsm-mini" / "templates"
SETS = {"symbolic": 100, "p1": 100, "p2": 50}


@pytest.fixture(scope="module")
def upstream():
    return {name: load_template_set(UPSTREAM / name) for name in SETS}


def _against_original(template_id: str) -> bool:
    # P1/P2 keep the unperturbed GSM8K item in question/answer by design.
    return not template_id.startswith(("p1/", "p2/"))


# ------------------------------------------------------------------ answers
@pytest.mark.parametrize("x, s", [(10, "10"), (10.0, "10"), (32.5, "32.5"), (-3, "-3"), (-3.0, "-3"),
                                  (Fraction(65, 2), "32.5"), (Fraction(1, 8), "0.125"),
                                  (0.1 + 0.2, "0.30000000000000004"), (Fraction(1, 3), "1/3"),
                                  (1234567, "1234567")])
def test_format_answer(x, s):
    assert format_answer(x) == s


# ------------------------------------------------------------------ loading and defaults
def test_load_all_upstream(upstream):
    for name, count in SETS.items():
        ts = upstream[name]
        assert len(ts) == count
        assert [t.template_id for t in ts] == sorted(f"{name}/{p.stem}" for p in (UPSTREAM / name).glob("*.json"))
        assert all(t.slots() and t.init for t in ts)


def test_check_defaults_all_upstream(upstream):
    ids = {t.template_id for ts in upstream.values() for t in ts}
    assert set(KNOWN_UPSTREAM_DEFECTS) <= ids
    assert UNDRAWABLE_UPSTREAM <= set(KNOWN_UPSTREAM_DEFECTS)
    passed = 0
    for ts in upstream.values():
        for t in ts:
            orig = _against_original(t.template_id)
            reason = KNOWN_UPSTREAM_DEFECTS.get(t.template_id)
            if reason is None:
                assert check_defaults(t, against_original=orig) is None
                passed += 1
            else:
                # still fails, for exactly the documented reason
                assert " | ".join(default_problems(t, orig)) == reason
                with pytest.raises(TemplateError) as e:
                    check_defaults(t, against_original=orig)
                assert t.template_id in str(e.value) and reason in str(e.value)
                assert check_defaults(t, against_original=orig, allow_known=True) == reason
    assert passed == 250 - len(KNOWN_UPSTREAM_DEFECTS)
    # the whole symbolic answer column agrees with GSM8K except symbolic/0062
    bad_answers = [t.template_id for t in upstream["symbolic"]
                   if any(p.startswith("answer:") for p in default_problems(t))]
    assert bad_answers == ["symbolic/0062"]


def test_check_defaults_allow_known_is_strict(upstream):
    t = next(t for t in upstream["symbolic"] if t.template_id == "symbolic/0004")
    # p1/p2 checked against the original fail for another reason than the listed one
    p1 = next(t for t in upstream["p1"] if t.template_id == "p1/0005")
    with pytest.raises(TemplateError):
        check_defaults(p1, against_original=True, allow_known=True)
    assert check_defaults(t, allow_known=True) == KNOWN_UPSTREAM_DEFECTS["symbolic/0004"]


def test_whitespace_and_capitalisation_normalisation(upstream):
    # GSM8K has double spaces and "Half" at a sentence start where the slot default is "half"
    t = next(t for t in upstream["symbolic"] if t.template_id == "symbolic/0008")
    assert "  " in t.question
    assert check_defaults(t) is None
    # "$400 000" (GSM8K) equals "$400000" (template)
    t = next(t for t in upstream["symbolic"] if t.template_id == "symbolic/0034")
    assert "400 000" in t.question and check_defaults(t) is None


@pytest.mark.skipif(not MINI.is_dir() or not any(MINI.glob("*.json")), reason="no gsm-mini templates")
def test_gsm_mini_templates():
    ts = load_template_set(MINI)
    for t in ts:
        assert check_defaults(t) is None
        df = instances_frame(draw_instances(t, 5, 0))
        assert all(verify_instance(t, r) == [] for r in df.to_dict("records"))


# ------------------------------------------------------------------ drawing
def _draw_and_verify(t, n, seed=0):
    inst = draw_instances(t, n, seed)
    assert len(inst) == n and [i.index for i in inst] == list(range(n))
    assert len({i.question for i in inst}) == n
    df = instances_frame(inst)
    for row in df.to_dict("records"):
        assert verify_instance(t, row) == [], (t.template_id, row["question"])
        assert row["solution"].endswith(f"#### {row['answer']}")
        assert "<<" not in row["solution"] and "{" not in row["question"]
        assert not row["answer"].endswith(".0")
    return df


def test_draw_symbolic_50_each(upstream):
    start = time.perf_counter()
    drawn = 0
    for t in upstream["symbolic"]:
        if t.template_id in UNDRAWABLE_UPSTREAM:
            with pytest.raises(TemplateError, match="never equals #answer"):
                draw_instances(t, 50, 0)
            continue
        _draw_and_verify(t, 50)
        drawn += 1
    assert drawn == 99
    print(f"symbolic: 99 templates x 50 instances in {time.perf_counter() - start:.1f}s")


@pytest.mark.parametrize("name", ["p1", "p2"])
def test_draw_perturbed_10_each(upstream, name):
    for t in upstream[name]:
        if t.template_id in UNDRAWABLE_UPSTREAM:
            with pytest.raises(TemplateError, match="never equals #answer"):
                draw_instances(t, 10, 0)
            continue
        _draw_and_verify(t, 10)


def test_determinism(upstream):
    for t in upstream["symbolic"][:5] + upstream["p1"][:2]:
        a = instances_frame(draw_instances(t, 20, 7))
        b = instances_frame(draw_instances(t, 20, 7))
        pd.testing.assert_frame_equal(a, b)
        c = instances_frame(draw_instances(t, 20, 8))
        assert set(a["question"]) != set(c["question"])
        # a smaller draw is a prefix of a larger one
        d = instances_frame(draw_instances(t, 5, 7))
        pd.testing.assert_frame_equal(d, a.iloc[:5])


def test_frame_columns(upstream):
    t = upstream["symbolic"][0]
    df = instances_frame(draw_instances(t, 3, 1))
    assert list(df.columns) == ["template_id", "instance_id", "index", "question", "solution", "answer",
                                "answer_value", "variables"]
    assert list(df["instance_id"]) == [f"{t.template_id}#{i}" for i in range(3)]
    assert all(isinstance(json.loads(v), dict) for v in df["variables"])
    assert df["answer_value"].dtype == "float64"


def test_worded_values_render_as_words(upstream):
    t = next(t for t in upstream["symbolic"] if t.template_id == "symbolic/0007")  # numbers_within
    df = instances_frame(draw_instances(t, 5, 3))
    for row in df.to_dict("records"):
        v = json.loads(row["variables"])
        assert f"buys {v['n4']['text']} " in row["question"]
        assert isinstance(v["n4"]["value"], int)


# ------------------------------------------------------------------ verification
def test_verify_catches_tampering(upstream):
    t = next(t for t in upstream["symbolic"] if t.template_id == "symbolic/0000")
    row = instances_frame(draw_instances(t, 1, 0)).iloc[0].to_dict()
    assert verify_instance(t, row) == []

    bad = dict(row, question=row["question"].replace("saw", "spotted"))
    assert any("question" in p for p in verify_instance(t, bad))

    bad = dict(row, answer=str(int(row["answer"]) + 1))
    assert any("answer" in p for p in verify_instance(t, bad))

    v = json.loads(row["variables"])
    v["y"] = 5  # in range(2, 100), but k*5 is no multiple of 12 for k < 10
    probs = verify_instance(t, dict(row, variables=json.dumps(v)))
    assert any("condition" in p and "does not hold" in p for p in probs)

    v = json.loads(row["variables"])
    v["x"] = 15  # not in range(10, 500, 10)
    probs = verify_instance(t, dict(row, variables=v))  # a dict is accepted too
    assert any("x=" in p and "can draw" in p for p in probs)

    assert verify_instance(t, dict(row, variables="{not json")) != []
    assert verify_instance(t, dict(row, variables=json.dumps({"n": "Benny"}))) != []


# ------------------------------------------------------------------ template language
def _write(tmp_path, name, question_annotated, answer_annotated="#### {x}", question="", answer="#### 0"):
    d = tmp_path / "hostile"
    d.mkdir(exist_ok=True)
    p = d / f"{name}.json"
    p.write_text(json.dumps({"question": question, "answer": answer, "id_orig": 0,
                             "question_annotated": question_annotated,
                             "answer_annotated": answer_annotated}))
    return p


def _qa(init="- $x = range(1, 10)", cond="- x > 0", ans="#answer: x"):
    return f"Tom has {{x,3}} apples.\n\n#init:\n{init}\n\n#conditions:\n{cond}\n\n{ans}"


# name: (section, offending line, what the error must say)
HOSTILE = {
    "attribute": ("init", "- $x = x.__class__", "attribute access"),
    "attribute_cond": ("cond", "- ().__class__.__bases__", "attribute access"),
    "attribute_call": ("init", "- $x = range(1, 3).count(1)", "attribute access"),
    "dunder_import": ("init", "- $x = __import__('os')", "dunder name"),
    "dunder_name": ("cond", "- __builtins__", "dunder name"),
    "import_stmt": ("init", "- $x = import os", "not a valid expression"),
    "lambda": ("init", "- $x = (lambda: 1)()", "lambda is not allowed"),
    "comprehension": ("init", "- $x = [i for i in range(3)]", "list comprehension"),
    "huge_exponent": ("init", "- $x = 10**10**10", "exponent"),
    "huge_power_result": ("cond", "- (10**60)**60 > x", "too large"),
    "huge_range": ("init", "- $x = range(10**12)", "range too long"),
    "huge_arange": ("init", "- $x = np.arange(0, 10**9, 1)", "arange too long"),
    "huge_list": ("init", "- $x = [1, 2] * 10**9", "too long"),
    "huge_string": ("init", "- $x = 'a' * 10**9", "too long"),
    "unknown_function": ("cond", "- open('x')", "unknown function"),
    "unknown_variable": ("cond", "- y > 0", "unknown name 'y'"),
    "eval": ("ans", "#answer: eval('1+1')", "unknown function"),
    "keywords": ("init", "- $x = range(1, stop=3)", "keyword arguments"),
    "fstring": ("cond", "- f'{x}'", "f-string"),
    "random_in_answer": ("ans", "#answer: sample([1, 2])", "#init only"),
    "infinite_float": ("init", "- $x = 1e999", "not a finite number"),
    "nested_list": ("init", "- $x = [[1] * 1000] * 1000", "too long"),
    "nested_list_literal": ("cond", "- [[1] * 60000, [2] * 60000] == [x]", "too long"),
    "costly_constant": ("cond", "- len(list(range(99999))) + len(list(range(99999))) + len(list(range(99999)))"
                                " + len(list(range(99999))) > x", "too costly"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_templates_refused(tmp_path, name):
    section, line, what = HOSTILE[name]
    p = _write(tmp_path, name, _qa(**{section: line}))
    with pytest.raises(TemplateError) as e:
        load_template(p)
    msg = str(e.value)
    assert msg.startswith(f"template hostile/{name}: question_annotated line ")
    assert f"`{line}`" in msg and what in msg


def test_hostile_solution_template_refused(tmp_path):
    p = _write(tmp_path, "sol", _qa(), answer_annotated="He has {x.__class__} apples.\n#### {x}")
    with pytest.raises(TemplateError, match=r"hostile/sol: answer_annotated line 1 .*attribute access"):
        load_template(p)


def test_runtime_bound_reported_with_line(tmp_path):
    p = _write(tmp_path, "runtime", _qa(init="- $x = range(2, 5)\n- $y = 10 ** (x * 1000)"))
    t = load_template(p)  # the exponent depends on x: only drawing finds it
    with pytest.raises(TemplateError) as e:
        draw_instances(t, 1, 0, max_tries=2000)
    assert "hostile/runtime" in str(e.value) and "- $y = 10 ** (x * 1000)" in str(e.value)
    assert "exponent" in str(e.value)


def test_no_eval_in_package():
    import ast

    banned = {"eval", "exec", "compile", "__import__", "getattr", "setattr", "globals", "locals", "vars"}
    for path in (ROOT / "cca" / "templates").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in banned, f"{path.name}:{node.lineno} calls {node.func.id}"


def test_upstream_quirks_accepted(tmp_path):
    qa = ("{name,Ann} has {x,3} apples and {y, two} pears.\n\n#init:\n- name = sample(names_female)\n"
          "- $x = range(1, 10)\n- $y = numbers_within(2, 9)\n- $s = range(2, 20)\n- $x = range(1, 10)\n"
          "#conditions:\n-x + y == s\n#answer = {$s}")
    p = _write(tmp_path, "quirks", qa, answer_annotated="{name} has {x} + {y} = <<{x}+{y}={s}>>{s}.\n\n#### {$s}",
               question="Ann has 3 apples and two pears.", answer="#### 5")
    t = load_template(p)
    assert t.variables == ("name", "x", "y", "s")
    assert check_defaults(t) is None  # s has no slot: solved from x + y == s
    df = _draw_and_verify(t, 20)
    assert all(len(r.splitlines()) == 2 for r in df["solution"])


def test_malformed_templates(tmp_path):
    cases = {
        "no_init": ("Tom has {x,3} apples.\n#answer: x", "no '#init:'"),
        "no_answer": ("Tom has {x,3} apples.\n#init:\n- $x = range(3)", "no '#answer:'"),
        "undefined_slot": ("Tom has {z,3} apples.\n#init:\n- $x = range(3)\n#answer: x", "slot {z,...}"),
        "twice": ("Tom has {x,3} apples.\n#init:\n- $x = range(3)\n- $x = range(4)\n#answer: x",
                  "defined twice"),
        "bad_line": ("Tom has {x,3} apples.\n#init:\n$x = range(3)\n#answer: x", "starting with '- '"),
    }
    for name, (qa, what) in cases.items():
        with pytest.raises(TemplateError, match=re.escape(what)):
            load_template(_write(tmp_path, name, qa))
    with pytest.raises(TemplateError, match="must end with a line"):
        load_template(_write(tmp_path, "sol", _qa(), answer_annotated="He has {x}."))


def test_impossible_conditions(tmp_path):
    t = load_template(_write(tmp_path, "never", _qa(cond="- x > 100")))
    with pytest.raises(TemplateError, match="no values satisfy"):
        draw_instances(t, 1, 0)
    t = load_template(_write(tmp_path, "few", _qa(cond="- x < 3")))
    with pytest.raises(TemplateError, match="only 2 of 3"):
        draw_instances(t, 3, 0, max_tries=500)


def test_long_expression_refused(tmp_path):
    line = "- " + " + ".join(["x"] * 3000) + " > 0"
    with pytest.raises(TemplateError, match=r"hostile/long: question_annotated line 7 .*expression too long"):
        load_template(_write(tmp_path, "long", _qa(cond=line)))


def test_slot_with_long_whitespace_loads_quickly(tmp_path):
    # the slot pattern used to backtrack cubically in the whitespace of a slot
    spaces = " " * 20_000
    start = time.perf_counter()
    t = load_template(_write(tmp_path, "spaces", _qa().replace("{x,3}", "{x," + spaces + "3" + spaces + "}")))
    assert t.slots()[0].default == "3"
    with pytest.raises(TemplateError, match="malformed slot"):
        load_template(_write(tmp_path, "unclosed", _qa().replace("{x,3}", "{x,3} {x," + spaces)))
    assert time.perf_counter() - start < 5


def test_answer_beyond_float_range_is_an_error(tmp_path):
    t = load_template(_write(tmp_path, "huge", _qa(ans="#answer: (10**60)**6 + x"),
                             answer_annotated="#### {(10**60)**6 + x}"))
    with pytest.raises(TemplateError, match=r"hostile/huge: every draw fails: .*beyond a float's range"):
        draw_instances(t, 1, 0, max_tries=2000)


def test_variable_beyond_float_range_is_kept_exact(tmp_path):
    t = load_template(_write(tmp_path, "exact", _qa(init="- $x = range(1, 10)\n- $y = Fraction(2 * (10**50)**8 + 2 * x + 1, 2)")))
    row = instances_frame(draw_instances(t, 1, 0)).iloc[0].to_dict()
    y = json.loads(row["variables"])["y"]
    assert y["fraction"].endswith("/2") and len(y["fraction"]) > 400
    assert verify_instance(t, row) == []


def test_membership_in_a_large_range_is_quick(tmp_path):
    t = load_template(_write(tmp_path, "member", _qa(cond="- x + 10**6 in range(10**6)")))
    with pytest.raises(TemplateError, match=r"only 0 of 1 distinct valid instances in 3000 draws"):
        draw_instances(t, 1, 0, max_tries=3000, time_limit=20)


def test_time_limit_ends_slow_drawing(tmp_path):
    # each draw shuffles 100,000 items and then fails its condition
    qa = _qa(init="- a, b = shuffle_list(range(100000))[:2]\n- $x = range(1, 10)", cond="- x > 100")
    t = load_template(_write(tmp_path, "slow", qa))
    start = time.perf_counter()
    with pytest.raises(TemplateError, match=r"hostile/slow: drawing 1 instances took longer than the time "
                                            r"limit of 0.5 s"):
        draw_instances(t, 1, 0, time_limit=0.5)
    assert time.perf_counter() - start < 5


def test_overlong_numeric_default_is_not_a_number(tmp_path):
    # 5,000 digits: int() refuses over 4,300, which escaped as a ValueError
    t = load_template(_write(tmp_path, "digits", _qa().replace("{x,3}", "{x," + "1" * 5000 + "}")))
    with pytest.raises(TemplateError, match=r"hostile/digits: defaults check failed: default '1111.*is not a number"):
        check_defaults(t, against_original=False)


def test_word_diff_of_long_texts_is_quick():
    start = time.perf_counter()
    assert "not compared word by word" in word_diff("a b " * 3000, "b a " * 3000)
    assert word_diff("a b c", "a x c") == "'b' -> 'x'"
    assert time.perf_counter() - start < 1


def test_list_valued_variable_verifies(tmp_path):
    # the drawn [1, 2] is a constant (tuple) in the template and a list in the JSON variables
    qa = _qa(init="- $x = range(1, 10)\n- pair = [[1, 2], [3, 4]]").replace("apples.", "apples and {pair,1, 2} pears.")
    t = load_template(_write(tmp_path, "pairs", qa))
    df = _draw_and_verify(t, 5)
    assert {json.dumps(json.loads(v)["pair"]) for v in df["variables"]} <= {"[1, 2]", "[3, 4]"}
