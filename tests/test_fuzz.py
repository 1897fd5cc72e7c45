"""Fuzz tests (hypothesis) of the template language and of config validation.

Templates, whether random text, hostile expressions or built from the language's own
grammar, end in valid instances or in a TemplateError that names the template: never in
another exception, never in a hang (the evaluator's work budget and the drawing time
limit bound them; hypothesis's deadline checks it), never in code execution (payloads
that would leave a file, an environment variable or a module global behind leave
nothing). Mutated copies of config.yaml are accepted, holding the types the schema
promises, or refused with a CCAError that names a key path.

Budget: the "fuzz" profile below, derandomized so that CI sees the same examples on
every run; each test runs at most its max_examples, each example within the deadline.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import io
import math
import os
import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cca.config import ROOT, SCHEMA, check_config, load_config, model_settings, validate_config
from cca.errors import CCAError
from cca.templates import TemplateError, default_problems, draw_instances, instances_frame, verify_instance
from cca.templates.parse import parse_template

settings.register_profile(
    "fuzz", max_examples=100, deadline=10_000, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
FUZZ = settings.get_profile("fuzz")
DRAW_LIMITS = {"max_tries": 300, "time_limit": 1.0}  # per template, well within the deadline above

ENV_SENTINEL = "CCA_FUZZ_EXECUTED"
EXECUTED = False  # a payload that ran would set this module global


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory):
    """The file a payload would create if it ran."""
    return tmp_path_factory.mktemp("fuzz") / "executed"


def _side_effect_payloads(sentinel_path) -> list[str]:
    """Python expressions that, if anything ran them, would leave a trace behind."""
    p = str(sentinel_path)
    return [
        f"open({p!r}, 'w')",
        f"__import__('os').system('touch {p}')",
        f"__import__('os').environ.setdefault({ENV_SENTINEL!r}, '1')",
        f"__import__('sys').modules[{__name__!r}].__dict__.update(EXECUTED=True)",
    ]


def _nothing_executed(sentinel_path) -> bool:
    return not sentinel_path.exists() and ENV_SENTINEL not in os.environ and not EXECUTED


def test_payloads_leave_traces_when_run(sentinel):
    """The sentinels detect execution: Python's own eval of each payload leaves a trace."""
    global EXECUTED
    for payload in _side_effect_payloads(sentinel):
        assert _nothing_executed(sentinel)
        result = eval(payload)  # noqa: S307 - this test shows what the evaluator must never do
        with contextlib.suppress(AttributeError):
            result.close()
        assert not _nothing_executed(sentinel), payload
        sentinel.unlink(missing_ok=True)
        os.environ.pop(ENV_SENTINEL, None)
        EXECUTED = False


# ------------------------------------------------------------------ template strategies
def _hostile_forms(p: str) -> list[str]:
    """``p`` as is and inside constructs the language refuses (or only reaches at run time)."""
    return [p, f"(lambda: {p})()", f"[{p} for _ in range(1)]", f"(_v := {p})", "f'{" + p + "}'",
            f"eval({p!r})", f"exec({p!r})", f"1 if x > 100 else {p}", f"x + len(str({p}))", f"[{p}][0]",
            f"{p} and x", f"getattr({p}, '__class__')"]


EXHAUSTING = [
    "9**9**9", "10**10**10", "2**64**64", "(10**60)**60", "(10**60)**6", "range(10**12)", "list(range(10**6))",
    "'a' * 10**9", "[1] * 10**9", "[[1] * 10**5] * 10**5", "[[x] * 10**5] * 10**5", "[x] * 10**5 * 10**5",
    "np.arange(0, 1, 10**-9)", "randint(0, 10, 10**9)", "sample(range(10**6), 10**6)",
    "numbers_within(0, 10**7)", "round(x, 10**9)", "int('9' * 5000)", "1e999", "-1e999", "1e308 * 1e308",
    "Fraction(1, 0)", "x / 0", "x % 0", "x ** -1000", "0 ** -1", "x ** 0.5",
    "sum(list(range(99999))) * sum(list(range(99999)))", "len(list(range(99999)) * 10)",
    "[list(range(99999))] * 2 == [list(range(99999))] * 2", "x + 10**6 in range(10**6)",
    "sample([])", "sample(range(0))", "min([])", "shuffle_list(x)", "x[10**9]", "names[::0]", "names[10**20:]",
    "Fraction(2 * (10**50)**8 + 1, 2)", "format_frac(x / 3) * 10**4", "fix_floats([[[x]]])",
]
SYNTAX = [
    "(" * 150 + "x" + ")" * 150, "(" * 1000 + "x" + ")" * 1000, "-" * 3000 + "x", "not " * 3000 + "x",
    " + ".join(["x"] * 2000), "[" * 90 + "]" * 90, "x[" * 60 + "0" + "]" * 60, "*x", "yield x", "await x",
    "x.real", "x @ x", "x << 2", "x & 1", "~x", "{1: x}", "{x}", "x if x", "x,", "", "#", "\\", "'", "\x00",
    "x\n+ 1", "b'x'", "1j", "...", "print", "__builtins__", "__import__", "(x)(x)", "range(1)(2)",
    "range(x, stop=2)", "sample(*[names])", "max(**{})", "lambda: 1", "import os", "x = 1", "del x",
    "sample.__globals__", "np.random.__dict__", "np.linalg.inv(x)", "'%s' % x", "x is x", "x is not None",
    "x $ 1", "$$x", "{x,1}", "}", "x\r\n- 1", "\u00a0x", "ｘ", "x\u2028+1", "x.__class__.__init__.__globals__['os']",
]
POSITIONS = ["init", "tuple", "cond", "answer", "solution", "final"]


def _template(expr: str, position: str) -> dict:
    """A small valid template with ``expr`` put at ``position``."""
    init, cond, answer, hole, final = ["- $x = range(1, 10)"], ["- x > 0"], "x", "x", "x"
    if position == "init":
        init.append(f"- $y = {expr}")
    elif position == "tuple":
        init.append(f"- a, b = {expr}")
    elif position == "cond":
        cond.append(f"- {expr}")
    elif position == "answer":
        answer = expr
    elif position == "solution":
        hole = expr
    else:
        final = expr
    qa = ("Tom has {x,3} apples.\n\n#init:\n" + "\n".join(init) + "\n\n#conditions:\n" + "\n".join(cond)
          + f"\n\n#answer: {answer}")
    return {"question": "Tom has 3 apples.", "answer": "#### 3", "question_annotated": qa,
            "answer_annotated": f"He has {{{hole}}} apples.\n#### {{{final}}}"}


TEMPLATE_CHARS = list("{}#$-=,:()[]'\"\\ \n\t_+*/%<>!.") + list("xyzabn019")
TOKENS = ["x", "y", "$x", "0", "1", "7", "2.5", "10**9", "+", "-", "*", "/", "//", "%", "**", "(", ")", "[",
          "]", ",", " ", ":", "==", "<", " and ", " or ", " not ", " if ", " else ", " in ", "'a'", "range",
          "sample", "len", "sum", "int", "names", "fractions", "np.arange", "__class__", ".", "{", "}"]
fragments = st.text(alphabet=TEMPLATE_CHARS, max_size=30)
token_soup = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=12).map("".join)
random_exprs = st.one_of(token_soup, fragments)
random_lines = st.one_of(random_exprs.map("- {}".format), random_exprs.map("- $z = {}".format),
                         random_exprs.map("- $y = {}".format), random_exprs.map("- x, y = {}".format),
                         st.one_of(fragments, fragments.map("#{}".format)))


@st.composite
def random_templates(draw):
    """Random text shaped like a template: slots, sections and lines, now and then out of order or missing."""
    question = draw(fragments) + "{" + draw(st.sampled_from(["x", "y", "z"])) + "," + draw(fragments) + "}"
    sections = [("#init:", ["- $x = range(1, 10)"] + draw(st.lists(random_lines, max_size=3))),
                ("#conditions:", draw(st.lists(random_lines, max_size=3))),
                (f"#answer: {draw(token_soup)}", [])]
    if draw(st.sampled_from([False] * 4 + [True])):
        sections = draw(st.permutations(sections))
        sections = [s for s in sections if draw(st.booleans())]
    qa = "\n".join([question] + [line for head, lines in sections for line in [head, *lines]])
    aa = draw(fragments) + "{" + draw(random_exprs) + "}\n#### {" + draw(random_exprs) + "}"
    fields = {"question_annotated": qa, "answer_annotated": aa, "question": draw(fragments),
              "answer": "#### " + draw(fragments), "id_orig": draw(st.one_of(st.none(), st.integers()))}
    if draw(st.sampled_from([False] * 9 + [True])):
        field = draw(st.sampled_from(["question_annotated", "answer_annotated"]))
        fields[field] = draw(st.one_of(st.none(), st.integers(), st.lists(st.text(max_size=3), max_size=2)))
    return fields


NUMBERS = st.one_of(st.integers(-5, 120).map(str), st.sampled_from(["0.5", "0.25", "1.5", "2.75", "10**3"]))


@functools.cache
def numeric_exprs(names: tuple[str, ...]):
    """Arithmetic over numbers and the numeric variables ``names`` (valid syntax, often valid values)."""
    leaves = st.one_of(NUMBERS, st.sampled_from(names)) if names else NUMBERS
    lists = st.lists(leaves, min_size=1, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]")

    def extend(inner):
        return st.one_of(
            st.builds("({} {} {})".format, inner, st.sampled_from(["+", "-", "*", "/", "//", "%"]), inner),
            st.builds("({} ** {})".format, inner, st.integers(0, 3)),
            st.builds("{}({})".format, st.sampled_from(["abs", "int", "round", "fix_floats", "-"]), inner),
            st.builds("{}({}, {})".format, st.sampled_from(["min", "max", "Fraction", "divides"]), inner, inner),
            st.builds("round({}, {})".format, inner, st.integers(0, 3)),
            st.builds("({} if {} > {} else {})".format, inner, inner, inner, inner),
            st.builds("{}({})".format, st.sampled_from(["len", "sum", "min", "max"]), lists),
            st.builds("{}[{}]".format, lists, st.integers(-2, 3)))
    return st.recursive(leaves, extend, max_leaves=6)


@functools.cache
def domains(names: tuple[str, ...]):
    """What a numeric #init variable is drawn from."""
    small = st.integers(-5, 60)
    return st.one_of(
        st.builds("range({}, {})".format, small, small),
        st.builds("range({}, {}, {})".format, small, st.integers(10, 300), st.integers(1, 15)),
        st.lists(small, min_size=1, max_size=5).map(str),
        st.builds("sample(range({}, {}))".format, st.integers(0, 5), st.integers(6, 50)),
        st.builds("np.arange({}, {}, {})".format, st.sampled_from(["0", "0.5", "1"]), st.integers(2, 10),
                  st.sampled_from(["0.25", "0.5", "1"])),
        st.builds("randint({}, {})".format, st.integers(0, 5), st.integers(3, 30)),
        st.builds("numbers_within({}, {})".format, st.integers(0, 5), st.integers(5, 40)),
        st.sampled_from(["sample(fractions)", "sample(multi_times)", "fraction_decimals", "sample([0.5, 1.5, 2])"]),
        numeric_exprs(names) if names else small.map(str))


@functools.cache
def conditions(names: tuple[str, ...]):
    expr = numeric_exprs(names)
    return st.one_of(
        st.builds("{} {} {}".format, expr, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), expr),
        st.builds("is_int({})".format, expr),
        st.builds("divides({}, {})".format, expr, expr),
        st.builds("{} in {}".format, expr, st.lists(NUMBERS, min_size=1, max_size=4).map(str)))


defaults = st.one_of(st.integers(0, 99).map(str), st.sampled_from(
    ["1" * 5000, "half", "twice", "forty-two", "1/0", "1/2", "1,000", " ", "x", "hundred " * 50, ".5."]))


@st.composite
def grammar_templates(draw):
    """Templates built from the language's own constructs; many of them draw fine."""
    names, init = [], []
    for i in range(draw(st.integers(1, 4))):
        init.append(f"- ${'xyzw'[i]} = {draw(domains(tuple(names)))}")
        names.append("xyzw"[i])
    words = draw(st.sampled_from([[], ["name = sample(names)"], ["c1, c2 = sample(colors, 2)"]]))
    init += [f"- {w}" for w in words]
    slots = [f"{{{v},{draw(defaults)}}}" for v in names]
    slots += ["{name,Ann}"] if "name = sample(names)" in words else []
    answer = draw(numeric_exprs(tuple(names)))
    qa = ("Tom has " + " and ".join(slots) + " apples.\n\n#init:\n" + "\n".join(init) + "\n\n#conditions:\n"
          + "\n".join(f"- {c}" for c in draw(st.lists(conditions(tuple(names)), max_size=2))) + f"\n\n#answer: {answer}")
    aa = f"So {{{names[0]}}} + {{{answer}}} apples.\n#### {{{answer}}}"
    return {"question": "Tom has apples.", "answer": "#### 1", "question_annotated": qa,
            "answer_annotated": aa}, slots


# ------------------------------------------------------------------ template outcomes
def _outcome(data: dict, tid: str, slots=()) -> str:
    """'instances' or 'refused', after checking what each must look like."""
    try:
        t = parse_template(data, tid)
        assert all(isinstance(p, str) and p for p in default_problems(t, against_original=True))
        rows = instances_frame(draw_instances(t, 3, 0, **DRAW_LIMITS)).to_dict("records")
    except TemplateError as e:
        message = str(e)
        assert message.startswith(f"template {tid}: ") and len(message) > len(f"template {tid}: ") + 5
        return "refused"
    for row in rows:
        assert re.fullmatch(r"-?\d+(\.\d+)?", row["answer"]), row["answer"]
        assert math.isfinite(row["answer_value"])
        assert not any(slot in row["question"] for slot in slots), row["question"]
        assert verify_instance(t, row) == [], row
    return "instances"


def _run(strategy, check, max_examples=None) -> list[str]:
    """Run ``check`` on every example of ``strategy`` under the fuzz profile; the outcomes."""
    outcomes = []

    @settings(FUZZ, max_examples=max_examples or FUZZ.max_examples)
    @given(strategy)
    def run(example):
        outcomes.append(check(example))
    run()
    return outcomes


def test_code_execution_payloads_are_refused_at_load(sentinel):
    payloads = [f for p in _side_effect_payloads(sentinel) for f in _hostile_forms(p)]

    def check(example):
        form, position = example
        with pytest.raises(TemplateError, match=r"^template fuzz/exec: "):
            parse_template(_template(form, position), "fuzz/exec")
        assert _nothing_executed(sentinel)
        return "refused"
    assert set(_run(st.tuples(st.sampled_from(payloads), st.sampled_from(POSITIONS)), check)) == {"refused"}


def test_hostile_expressions_end_in_an_error_or_instances(sentinel):
    def check(example):
        expr, position = example
        outcome = _outcome(_template(expr, position), "fuzz/hostile", ["{x,3}"])
        assert _nothing_executed(sentinel)
        return outcome
    outcomes = _run(st.tuples(st.sampled_from(EXHAUSTING + SYNTAX), st.sampled_from(POSITIONS)), check, 160)
    assert "refused" in outcomes


def test_random_templates_end_in_an_error_or_instances(sentinel):
    def check(data):
        outcome = _outcome(data, "fuzz/random")
        assert _nothing_executed(sentinel)
        return outcome
    assert "refused" in _run(random_templates(), check)


def test_grammar_templates_end_in_an_error_or_instances():
    outcomes = _run(grammar_templates(), lambda example: _outcome(example[0], "fuzz/grammar", example[1]))
    assert outcomes.count("instances") >= 10 and "refused" in outcomes


# ------------------------------------------------------------------ config
CONFIG = yaml.safe_load((ROOT / "config.yaml").read_text())
SCHEMA_DOC = yaml.safe_load(SCHEMA.read_text())
YAML_HOSTILE = ["!!python/object/apply:os.system ['touch SENTINEL']", "!!python/name:os.system", "&a [*a]",
                "*undefined", "{{ config }}", "${HOME}", "null", "~", ".nan", ".inf", "1e3", "0x10", "0o7",
                "yes", "on", "01:02", "2024-01-01", "'", '"', "\x00", "?", "- a", "a: b", "[", "{"]
garbage_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([10**30, -10**30, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1.5, 1e308, 5.0, 2.0]),
    st.text(max_size=12), st.sampled_from(YAML_HOSTILE))
garbage = st.recursive(garbage_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.one_of(st.text(max_size=8), st.integers(0, 3)), inner, max_size=3)), max_leaves=6)
keys = st.one_of(st.text(max_size=10), st.sampled_from(["seedz", "lr", "task", "profile", "overrides", "dcm"]),
                 st.integers(0, 3))


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _nudges(value):
    """Values close to ``value`` but likely wrong: the mistakes a person makes in config.yaml."""
    if isinstance(value, bool):
        return st.sampled_from([0, 1, "true", None])
    if isinstance(value, (int, float)):
        return st.sampled_from([-1, 0, -0.5, float(value), str(value), value * 10**30, True, None,
                                math.nan, math.inf, [value]])
    if isinstance(value, str):
        return st.sampled_from(["", value + "x", value.upper(), 0, [value], None])
    if isinstance(value, list):
        return st.sampled_from([[], value + value[:1], value[:1] * 2, [None], value[0] if value else 0])
    return st.sampled_from([{}, [], None, "x"])


def _mutate(draw, config):
    """One random change to ``config``; returns the (maybe new) root."""
    path = draw(st.sampled_from(list(_paths(config))))
    kind = draw(st.sampled_from(["delete", "add", "replace", "nudge", "nudge"]))
    if not path:
        return draw(garbage) if kind == "replace" else config
    parent = config
    for part in path[:-1]:
        parent = parent[part]
    node = parent[path[-1]]
    if kind == "delete":
        del parent[path[-1]]
    elif kind == "add" and isinstance(node, dict):
        node[draw(keys)] = draw(garbage)
    elif kind == "replace":
        parent[path[-1]] = draw(garbage)
    else:
        parent[path[-1]] = draw(_nudges(node))
    return config


def _rendered(path) -> str:
    """A key path as the config messages write it (``profiles.small.seeds[0]``)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _names_a_key_path(message: str, config) -> bool:
    """The message starts with a key path of ``config``, or with one below a model's overrides
    (``models.m.overrides.splits: ...`` when the overrides change what the splits are checked against)."""
    text = message.removeprefix("config.yaml: ")
    rendered = {_rendered(p) for p in _paths(config)} | {"(top level)"}
    return any(text.startswith(r + ":") or text.startswith(r + " gives")
               or (r.endswith(".overrides") and text.startswith(r + ".")) for r in rendered)


def _type_breaks(value, schema, path=()) -> list[str]:
    """Where ``value`` holds another Python type than the schema promises (an integer that
    is no int, a number that is not finite), following properties, items and $refs."""
    if "$ref" in schema:
        schema = SCHEMA_DOC["$defs"][schema["$ref"].split("/")[-1]]
    alternatives = [s for s in schema.get("oneOf", []) if s.get("type") != "null"]
    if alternatives and value is not None:
        return _type_breaks(value, alternatives[0], path)
    kind = schema.get("type")
    if kind == "integer" and type(value) is not int:
        return [f"{_rendered(path)}: {value!r} is no int"]
    if kind == "number" and not (type(value) in (int, float) and math.isfinite(value)):
        return [f"{_rendered(path)}: {value!r} is no finite number"]
    breaks = []
    if isinstance(value, dict):
        for k, v in value.items():
            sub = schema.get("properties", {}).get(k, schema.get("additionalProperties"))
            breaks += _type_breaks(v, sub, path + (k,)) if isinstance(sub, dict) else []
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            breaks += _type_breaks(v, schema["items"], path + (i,))
    return breaks


def _config_outcome(config) -> str:
    """'accepted' or 'refused', after checking what each must look like."""
    stderr = io.StringIO()
    try:
        validate_config(config)
    except CCAError as e:
        message = str(e)
        assert _names_a_key_path(message, config), message
        with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as exit_:
            check_config(config)
        assert exit_.value.code == 2 and stderr.getvalue() == f"error: {message}\n"
        return "refused"
    with contextlib.redirect_stderr(stderr):
        check_config(config)
    assert stderr.getvalue() == ""
    assert _type_breaks(config, SCHEMA_DOC) == []
    profile_schema = SCHEMA_DOC["$defs"]["profile"]
    for model in config["models"]:
        settings_ = model_settings(config, model)
        assert settings_["model"] == model and _type_breaks(settings_, profile_schema) == []
    return "accepted"


@st.composite
def mutated_configs(draw):
    """config.yaml with one to three random changes."""
    config = copy.deepcopy(CONFIG)
    for _ in range(draw(st.integers(1, 3))):
        config = _mutate(draw, config)
    return config


def test_mutated_configs_are_accepted_or_name_a_key():
    outcomes = _run(mutated_configs(), _config_outcome)
    assert "refused" in outcomes and "accepted" in outcomes


def test_unknown_model_names_are_refused():
    def check(name):
        if name in CONFIG["models"]:
            return "known"
        with pytest.raises(CCAError, match=r"^unknown model "):
            model_settings(CONFIG, name)
        return "refused"
    assert "refused" in _run(st.one_of(st.text(max_size=20), st.sampled_from(list(CONFIG["models"]))), check)


@st.composite
def config_texts(draw):
    """config.yaml's text with hostile YAML put in, lines garbled, or bytes that are no text."""
    lines = (ROOT / "config.yaml").read_text().splitlines()
    at = draw(st.integers(0, len(lines)))
    kind = draw(st.sampled_from(["hostile", "garble", "nest", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "hostile":
        lines.insert(at, f"{draw(st.sampled_from(['extra', '  extra', 'models', '    lr']))}: "
                         f"{draw(st.sampled_from(YAML_HOSTILE))}")
    elif kind == "garble":
        lines[min(at, len(lines) - 1)] = draw(st.text(alphabet=TEMPLATE_CHARS, max_size=30))
    else:
        depth = draw(st.sampled_from([10, 100, 1000]))
        lines.insert(at, "extra: " + "[" * depth + "]" * depth)
    return "\n".join(lines).encode()


def test_config_files_load_or_are_refused(tmp_path_factory, sentinel):
    path = tmp_path_factory.mktemp("config") / "config.yaml"

    def check(data):
        path.write_bytes(data.replace(b"SENTINEL", str(sentinel).encode()))
        try:
            config = load_config(path)
        except CCAError as e:
            assert str(e).startswith(f"{path}: ") or str(e).startswith("config.yaml: "), str(e)
            return "refused"
        finally:
            assert _nothing_executed(sentinel)
        assert _type_breaks(config, SCHEMA_DOC) == []
        return "loaded"
    assert "refused" in _run(config_texts(), check, 50)
