"""A whitelisted expression language for templates; never Python's eval/exec.

:func:`compile_expr` parses one expression with ``ast.parse(mode="eval")``, checks every
node against a whitelist, and turns the tree into nested closures ``f(env) -> value``.
Allowed: template variables, vocabulary names, the DSL functions below (as call targets
only; ``np.arange`` / ``np.random.randint`` are the only dotted names), literals
(numbers, strings, lists, tuples, True/False/None), ``+ - * / // % **`` (exponent at most
:data:`MAX_EXPONENT`), unary ``- + not``, comparisons (chained), ``and``/``or``,
conditional expressions, subscripts and slices. Everything else (attributes, dunder
names, lambdas, comprehensions, f-strings, keyword arguments, ...) is refused at load
time. Results are bounded: integers to :data:`MAX_INT_BITS` bits, ranges to
:data:`MAX_RANGE` items, lists and strings to :data:`MAX_ITEMS` items (nested items and
the characters of strings in a list count too, so ``[[1] * 10**5] * 10**5`` is refused).

Evaluation is bounded in work and time, without signals (so it works in any thread):
an expression has at most :data:`MAX_EXPR_CHARS` characters, and each evaluation of one
expression may touch at most :data:`MAX_WORK` list items or characters (each DSL call,
comparison or list operation is charged what it walks or builds); past that it raises
EvalError. An :class:`Env` may carry a ``deadline`` (``time.monotonic()``), checked at
each charge; past it evaluation raises :class:`EvalTimeout`, which is not an EvalError, so
that no caller takes it for one failed draw.

Sub-expressions that use no variable and no randomness are evaluated once (so a
hostile constant such as ``10**10**10`` or ``range(10**12)`` is refused at load time).
"""
from __future__ import annotations

import ast
import math
import operator
import random
import time
from dataclasses import dataclass, field
from fractions import Fraction

from cca.templates.values import Worded, is_number, norm_number, number_to_words, plain, render_value
from cca.templates.vocabularies import VOCABULARIES

MAX_EXPONENT = 64
MAX_INT_BITS = 2048
MAX_ITEMS = 100_000
MAX_RANGE = 1_000_000
MAX_EXPR_CHARS = 5_000
MAX_WORK = 1_000_000


class EvalError(ValueError):
    """Raised while compiling or evaluating; the caller adds template id and line."""


class EvalTimeout(Exception):
    """The deadline of an :class:`Env` passed during evaluation (the caller names the limit)."""


class ConstList(tuple):
    """A list literal or list result folded to a shared constant (immutable, still a list)."""


@dataclass
class Env:
    vars: dict
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    work_left: int = MAX_WORK      # list items and characters the current evaluation may still touch
    deadline: float | None = None  # time.monotonic() after which evaluation raises EvalTimeout


def charge(env: Env, work: int) -> None:
    """Count ``work`` against the evaluation's budget and check the deadline."""
    env.work_left -= work
    if env.work_left < 0:
        raise EvalError(f"expression too costly to evaluate (it touches over {MAX_WORK} list items "
                        "or characters); use smaller lists or ranges")
    if env.deadline is not None and time.monotonic() > env.deadline:
        raise EvalTimeout("time limit reached")


def size(x, limit=MAX_ITEMS) -> int:
    """Items in ``x``, nested ones included (a string counts its characters, a range its
    length, anything else 1); counting stops once it passes ``limit``."""
    t = type(x)
    if t is str or t is range:
        return len(x)
    if not isinstance(x, (list, tuple)):
        return 1
    total = len(x)
    for v in x:
        if total > limit:
            break
        t = type(v)
        if t is str or t is range:
            total += len(v)
        elif isinstance(v, (list, tuple)):
            total += size(v, limit - total)
    return total


def _cost(x) -> int:
    """What handing ``x`` to an operation may cost beyond O(1): a list's or string's size
    (a range is lazy but may be walked); nothing for a number or another scalar."""
    t = type(x)
    if t is int or t is Fraction or t is bool or t is Worded or x is None:
        return 0
    if t is range:
        return min(len(x), MAX_ITEMS)
    return size(x)


def show(x, quote=True, width=60) -> str:
    """A value as written in an error message (quoted, as repr), cut to about ``width`` characters."""
    if isinstance(x, (list, tuple)) and size(x, 1000) > 1000:
        return f"<a list of {len(x)} items>"
    text = render_value(x)
    text = text if len(text) <= width else text[:width] + "..."
    return repr(text) if quote else text


# ------------------------------------------------------------------ numeric helpers
def _num(x, what="operand"):
    t = type(x)
    if t is int or t is Fraction:
        return x
    x = plain(x)
    if is_number(x):
        return norm_number(x)
    raise EvalError(f"{what} must be a number, got {show(x)}")


def _int(x, what="argument"):
    x = _num(x, what)
    if type(x) is not int:
        raise EvalError(f"{what} must be a whole number, got {show(x)}")
    return x


def _too_big():
    return EvalError(f"number too large (over {MAX_INT_BITS} bits)")


def _check_num(x):
    if type(x) is int:
        if x.bit_length() > MAX_INT_BITS:
            raise _too_big()
    elif x.numerator.bit_length() > MAX_INT_BITS or x.denominator.bit_length() > MAX_INT_BITS:
        raise _too_big()
    return x


def _check_len(n, what):
    if n > MAX_ITEMS:
        raise EvalError(f"{what} too long ({n} items; at most {MAX_ITEMS})")


def _new_container(env, x, what="list"):
    """Check the size of a list, tuple or string the evaluator builds, and charge for it."""
    n = size(x)
    if n > MAX_ITEMS:
        raise EvalError(f"{what} too long (over {MAX_ITEMS} items, counting the items of nested "
                        "lists and the characters of strings)")
    charge(env, n)
    return x


def _seq(x):
    return isinstance(x, (list, tuple, range))


def is_collection(x) -> bool:
    """A list or range (not a tuple): what an init line draws one value from."""
    return isinstance(x, (list, ConstList, range))


def _add(a, b, env):
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        return _check_num(a + b)
    if (ta is int or ta is Fraction) and (tb is int or tb is Fraction):
        return _check_num(norm_number(a + b))
    a, b = plain(a), plain(b)
    if _seq(a) and _seq(b):
        _check_len(len(a) + len(b), "list")
        return _new_container(env, list(a) + list(b))
    if isinstance(a, str) and isinstance(b, str):
        _check_len(len(a) + len(b), "string")
        charge(env, len(a) + len(b))
        return a + b
    return _check_num(norm_number(_num(a) + _num(b)))


def _mul(a, b, env):
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        return _check_num(a * b)
    if (ta is int or ta is Fraction) and (tb is int or tb is Fraction):
        return _check_num(norm_number(a * b))
    a, b = plain(a), plain(b)
    for s, k in ((a, b), (b, a)):
        if _seq(s) or isinstance(s, str):
            k = _int(k, "repeat count")
            n = size(s) * max(k, 0)
            _check_len(n, "repeated string" if isinstance(s, str) else "repeated list")
            charge(env, n)
            return s * k if isinstance(s, str) else list(s) * k
    return _check_num(norm_number(_num(a) * _num(b)))


def _sub(a, b, env=None):
    if type(a) is int and type(b) is int:
        return _check_num(a - b)
    return _check_num(norm_number(_num(a) - _num(b)))


def _truediv(a, b, env=None):
    a, b = _num(a), _num(b)
    if b == 0:
        raise EvalError("division by zero")
    if type(a) is int and type(b) is int:
        return _check_num(norm_number(Fraction(a, b)))
    return _check_num(norm_number(a / b))


def _floordiv(a, b, env=None):
    a, b = _num(a), _num(b)
    if b == 0:
        raise EvalError("division by zero")
    return _check_num(a // b)


def _mod(a, b, env=None):
    a, b = _num(a), _num(b)
    if b == 0:
        raise EvalError("division by zero")
    return _check_num(norm_number(a % b))


def _pow(a, b, env=None):
    a, b = _num(a, "base"), _int(b, "exponent")
    if abs(b) > MAX_EXPONENT:
        raise EvalError(f"exponent {b} too large (at most {MAX_EXPONENT})")
    if a == 0 and b < 0:
        raise EvalError("division by zero")
    approx_bits = abs(b) * max(abs(Fraction(a).numerator).bit_length(), Fraction(a).denominator.bit_length())
    if approx_bits > MAX_INT_BITS:
        raise EvalError(f"power too large (over {MAX_INT_BITS} bits)")
    return _check_num(norm_number(Fraction(a) ** b))


_NUMBERS = (int, Fraction)
_BINOPS = {
    ast.Add: _add, ast.Sub: _sub, ast.Mult: _mul, ast.Div: _truediv, ast.FloorDiv: _floordiv,
    ast.Mod: _mod, ast.Pow: _pow,
}


def _cmp_operand(x):
    t = type(x)
    if t is int or t is Fraction:
        return x
    x = plain(x)
    return norm_number(x) if is_number(x) else x


def _compare(op):
    def f(a, b, env):
        a, b = _cmp_operand(a), _cmp_operand(b)
        if not (type(a) in _NUMBERS and type(b) in _NUMBERS):
            charge(env, _cost(a) + _cost(b))
        try:
            return op(a, b)
        except TypeError:
            raise EvalError(f"cannot compare {show(a)} and {show(b)}") from None
    return f


def _contains(a, b, env):
    b = plain(b)
    if not (_seq(b) or isinstance(b, str)):
        raise EvalError("'in' needs a list or string on the right")
    a = _cmp_operand(a)
    if isinstance(b, range):  # no walk: a range holds only whole numbers
        return isinstance(a, int) and a in b
    charge(env, _cost(a) + _cost(b))
    return any(_cmp_operand(v) == a for v in b) if _seq(b) else (isinstance(a, str) and a in b)


def _not_contains(a, b, env):
    return not _contains(a, b, env)


_CMPOPS = {
    ast.Eq: _compare(operator.eq), ast.NotEq: _compare(operator.ne), ast.Lt: _compare(operator.lt),
    ast.LtE: _compare(operator.le), ast.Gt: _compare(operator.gt), ast.GtE: _compare(operator.ge),
    ast.In: _contains, ast.NotIn: _not_contains,
}


# ------------------------------------------------------------------ DSL functions
def wrap_item(x):
    """A ``(text, number)`` pair drawn from a list becomes a Worded quantity."""
    if type(x) is tuple and len(x) == 2 and is_number(plain(x[1])) and not isinstance(x[1], bool):
        return Worded(render_value(x[0]), norm_number(plain(x[1])))
    return x


def _as_list(x, what="argument"):
    if isinstance(x, range):
        _check_len(len(x), what)
        return list(x)
    if isinstance(x, (list, tuple)):
        return list(x)
    raise EvalError(f"{what} must be a list or range, got {show(x)}")


def f_range(env, *args):
    if not 1 <= len(args) <= 3:
        raise EvalError("range takes 1 to 3 arguments")
    r = range(*(_int(a, "range bound") for a in args))
    if len(r) > MAX_RANGE:
        raise EvalError(f"range too long ({len(r)} items; at most {MAX_RANGE})")
    return r


def f_arange(env, start, stop=None, step=1):
    if stop is None:
        start, stop = 0, start
    start, stop, step = _num(start), _num(stop), _num(step)
    if step == 0:
        raise EvalError("arange step is zero")
    n = max(0, -((Fraction(start) - stop) // step))  # ceil((stop - start) / step)
    _check_len(n, "arange")
    return [norm_number(start + i * Fraction(step)) for i in range(n)]


def f_sample(env, seq, k=None):
    if not _seq(seq):
        raise EvalError(f"sample needs a list or range, got {show(seq)}")
    if len(seq) == 0:
        raise EvalError("sample from an empty list")
    if k is None:
        return wrap_item(seq[env.rng.randrange(len(seq))])
    k = _int(k, "sample size")
    if not 0 <= k <= len(seq):
        raise EvalError(f"cannot sample {k} items from {len(seq)}")
    _check_len(k, "sample")
    return [wrap_item(seq[i]) for i in env.rng.sample(range(len(seq)), k)]


def f_sample_sequential(env, seq, k):
    seq = _as_list(seq)
    k = _int(k, "sample size")
    if not 0 < k <= len(seq):
        raise EvalError(f"cannot take {k} consecutive items from {len(seq)}")
    i = env.rng.randrange(len(seq) - k + 1)
    return [wrap_item(v) for v in seq[i:i + k]]


def f_shuffle_list(env, seq):
    out = _as_list(seq)
    env.rng.shuffle(out)
    return out


def f_randint(env, low, high=None, size=None):
    """numpy semantics: integers in [low, high); a list of ``size`` draws if given."""
    if high is None:
        low, high = 0, low
    low, high = _int(low), _int(high)
    if high <= low:
        raise EvalError("randint needs low < high")
    if size is None:
        return env.rng.randrange(low, high)
    size = _int(size, "size")
    _check_len(size, "randint size")
    return [env.rng.randrange(low, high) for _ in range(size)]


def f_numbers_within(env, a, b):
    """The whole numbers a..b (inclusive), each written in words: Worded("four", 4)."""
    r = range(_int(a), _int(b) + 1)
    _check_len(len(r), "numbers_within")
    if r and (r[0] < 0 or r[-1] >= 10**6):
        raise EvalError("numbers_within supports 0..999999")
    return [Worded(number_to_words(n), n) for n in r]


def f_is_int(env, x):
    x = plain(x)
    return is_number(x) and isinstance(norm_number(x), int)


def f_int(env, x):
    x = plain(x)
    if isinstance(x, str) and x.strip().lstrip("+-").isdigit():
        return int(x)
    x = _num(x)
    return x if isinstance(x, int) else math.trunc(x)


def f_divides(env, a, b):
    """divides(a, b): a is a whole multiple of b (b != 0), e.g. divides(12, 4) is True."""
    a, b = _num(a), _num(b)
    return b != 0 and Fraction(a) % Fraction(b) == 0


def f_fraction(env, a, b=1):
    a, b = _num(a), _num(b)
    if b == 0:
        raise EvalError("division by zero")
    return norm_number(Fraction(a) / Fraction(b))


def f_round(env, x, ndigits=None):
    x = _num(x)
    if ndigits is None:
        return round(Fraction(x))  # half to even, like Python
    nd = _int(ndigits, "ndigits")
    if abs(nd) > 50:
        raise EvalError("round: ndigits too large")
    return norm_number(round(Fraction(x), nd))


def f_fix_floats(env, x):
    """Upstream rounds away float noise; numbers here are exact, so it only rounds to 10 places."""
    if _seq(x):
        return [f_fix_floats(env, v) for v in _as_list(x)]
    x = plain(x)
    if not is_number(x):
        return x
    x = norm_number(x)
    return x if isinstance(x, int) or 10**10 % x.denominator == 0 else norm_number(round(x, 10))


def f_list(env, x=()):
    return _as_list(x)


def f_format_frac(env, x):
    x = _num(x)
    return str(x) if isinstance(x, int) else f"{x.numerator}/{x.denominator}"


def f_abs(env, x):
    return abs(_num(x))


def _minmax(fn):
    def f(env, *args):
        vals = _as_list(args[0]) if len(args) == 1 else list(args)
        if not vals:
            raise EvalError("min/max of an empty list")
        return fn((_num(v) for v in vals))
    return f


def f_len(env, x):
    x = x if isinstance(x, str) else _as_list(x)
    return len(x)


def f_sum(env, x):
    return _check_num(norm_number(sum((Fraction(_num(v)) for v in _as_list(x)), Fraction(0))))


FUNCTIONS = {
    "range": f_range, "arange": f_arange, "np.arange": f_arange, "frange": f_arange,
    "sample": f_sample, "sample_sequential": f_sample_sequential, "shuffle_list": f_shuffle_list,
    "randint": f_randint, "np.random.randint": f_randint, "numbers_within": f_numbers_within,
    "is_int": f_is_int, "int": f_int, "divides": f_divides, "Fraction": f_fraction,
    "round": f_round, "fix_floats": f_fix_floats, "list": f_list, "format_frac": f_format_frac,
    "abs": f_abs, "min": _minmax(min), "max": _minmax(max), "len": f_len, "sum": f_sum,
}
def _checked_result(env, x):
    """A DSL function's result within the bounds on numbers and lists, charged for its size."""
    t = type(x)
    if t is int or t is Fraction:
        return _check_num(x)
    if t is list or t is tuple or t is str:
        return _new_container(env, x, "result")
    return x


RANDOM_FUNCTIONS = {"sample", "sample_sequential", "shuffle_list", "randint", "np.random.randint"}


# ------------------------------------------------------------------ compiler
@dataclass
class Compiled:
    fn: object          # callable(env) -> value
    names: frozenset    # template variables it reads
    random: bool        # whether it draws random numbers
    source: str

    def __call__(self, env):
        env.work_left = MAX_WORK
        try:
            return self.fn(env)
        except RecursionError:
            raise EvalError("expression nested too deeply") from None


def dotted_name(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


class _Compiler:
    def __init__(self, variables, fold_env):
        self.variables = set(variables)
        self.names = set()
        self.random = False
        self.fold_env = fold_env  # evaluates the constant parts; its budget is not reset

    def build(self, node):
        fn, static = self._c(node)
        return fn

    def _c(self, node):
        """Returns (closure, static); static closures are folded to constants once."""
        meth = self._HANDLERS.get(type(node))
        if meth is None:
            raise EvalError(f"{_describe(node)} is not allowed")
        fn, static = meth(self, node)
        if static and not isinstance(node, ast.Constant):
            value = fn(self.fold_env)
            if isinstance(value, list):
                value = ConstList(value)  # shared constant: keep it immutable
            return (lambda env, v=value: v), True
        return fn, static

    def _c_Expression(self, node):
        return self._c(node.body)

    def _c_Constant(self, node):
        v = node.value
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return (lambda env: v), True
        if isinstance(v, (int, float)):
            if isinstance(v, float) and not math.isfinite(v):
                raise EvalError(f"number {ast.unparse(node)} is too large (not a finite number)")
            v = _check_num(norm_number(v))
            return (lambda env: v), True
        raise EvalError(f"constant {v!r} is not allowed")

    def _c_Name(self, node):
        name = node.id
        if name.startswith("__") or name.endswith("__"):
            raise EvalError(f"dunder name '{name}' is not allowed")
        if name in self.variables:
            self.names.add(name)

            def get(env):
                try:
                    return env.vars[name]
                except KeyError:
                    raise EvalError(f"variable '{name}' has no value here") from None
            return get, False
        if name in VOCABULARIES:
            v = ConstList(VOCABULARIES[name])
            return (lambda env: v), True
        if name in FUNCTIONS:
            raise EvalError(f"function '{name}' can only be called")
        raise EvalError(f"unknown name '{name}'")

    def _seq_items(self, node):
        parts = [self._c(e) for e in node.elts]
        if any(isinstance(e, ast.Starred) for e in node.elts):
            raise EvalError("starred items are not allowed")
        fns = [p[0] for p in parts]
        _check_len(len(fns), "list")
        return fns, all(p[1] for p in parts)

    def _c_List(self, node):
        fns, static = self._seq_items(node)
        return (lambda env: _new_container(env, [f(env) for f in fns])), static

    def _c_Tuple(self, node):
        fns, static = self._seq_items(node)
        return (lambda env: _new_container(env, tuple(f(env) for f in fns), "tuple")), static

    def _c_BinOp(self, node):
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise EvalError(f"operator {type(node.op).__name__} is not allowed")
        (l, ls), (r, rs) = self._c(node.left), self._c(node.right)
        return (lambda env: op(l(env), r(env), env)), ls and rs

    def _c_UnaryOp(self, node):
        (f, s) = self._c(node.operand)
        if isinstance(node.op, ast.USub):
            return (lambda env: norm_number(-_num(f(env)))), s
        if isinstance(node.op, ast.UAdd):
            return (lambda env: _num(f(env))), s
        if isinstance(node.op, ast.Not):
            return (lambda env: not plain(f(env))), s
        raise EvalError(f"operator {type(node.op).__name__} is not allowed")

    def _c_BoolOp(self, node):
        parts = [self._c(v) for v in node.values]
        fns = [p[0] for p in parts]
        is_and = isinstance(node.op, ast.And)

        def f(env):
            v = None
            for fn in fns:
                v = fn(env)
                if bool(plain(v)) != is_and:
                    return v
            return v
        return f, all(p[1] for p in parts)

    def _c_Compare(self, node):
        first, fs = self._c(node.left)
        rest = [self._c(c) for c in node.comparators]
        ops = []
        for op in node.ops:
            if type(op) not in _CMPOPS:
                raise EvalError(f"comparison {type(op).__name__} is not allowed")
            ops.append(_CMPOPS[type(op)])
        pairs = list(zip(ops, [r[0] for r in rest]))

        def f(env):
            a = first(env)
            for op, g in pairs:
                b = g(env)
                if not op(a, b, env):
                    return False
                a = b
            return True
        return f, fs and all(r[1] for r in rest)

    def _c_IfExp(self, node):
        (t, ts), (b, bs), (o, os_) = self._c(node.test), self._c(node.body), self._c(node.orelse)
        return (lambda env: b(env) if plain(t(env)) else o(env)), ts and bs and os_

    def _c_Subscript(self, node):
        (v, vs) = self._c(node.value)
        if isinstance(node.slice, ast.Slice):
            sl = node.slice
            bounds = [self._c(x) if x is not None else ((lambda env: None), True)
                      for x in (sl.lower, sl.upper, sl.step)]

            def f(env):
                seq = v(env)
                if not (isinstance(seq, (str, list, tuple, range))):
                    raise EvalError(f"cannot slice {show(seq)}")
                idx = [None if b[0](env) is None else _int(b[0](env), "slice bound") for b in bounds]
                if idx[2] == 0:
                    raise EvalError("slice step is zero")
                out = seq[slice(*idx)]
                charge(env, 1 if isinstance(out, range) else len(out))
                return ConstList(out) if isinstance(seq, ConstList) else out
            return f, vs and all(b[1] for b in bounds)
        (i, is_) = self._c(node.slice)

        def g(env):
            seq, k = v(env), _int(i(env), "index")
            if not isinstance(seq, (str, list, tuple, range, Worded)):
                raise EvalError(f"cannot index {show(seq)}")
            try:
                return wrap_item(seq[k])
            except IndexError:
                raise EvalError(f"index {k} out of range") from None
        return g, vs and is_

    def _c_Call(self, node):
        name = dotted_name(node.func)
        if name is None and not isinstance(node.func, ast.Attribute):
            self._c(node.func)  # refuses lambdas and the like with their own message
            raise EvalError(f"only DSL functions can be called, not '{ast.unparse(node.func)}'")
        if name is None or name not in FUNCTIONS:
            if isinstance(node.func, ast.Attribute):
                raise EvalError(f"attribute access ('{ast.unparse(node.func)}') is not allowed")
            if name and (name.startswith("__") or name.endswith("__")):
                raise EvalError(f"dunder name '{name}' is not allowed")
            raise EvalError(f"unknown function '{ast.unparse(node.func)}'")
        if node.keywords:
            raise EvalError(f"keyword arguments are not allowed ({name})")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise EvalError("starred arguments are not allowed")
        fn = FUNCTIONS[name]
        parts = [self._c(a) for a in node.args]
        args = [p[0] for p in parts]
        rnd = name in RANDOM_FUNCTIONS
        if rnd:
            self.random = True

        def call(env):
            vals = [a(env) for a in args]
            work = 0
            for v in vals:
                if type(v) not in _NUMBERS:
                    work += _cost(v)
            if work:  # a call on scalars alone costs O(1) or is charged for its result
                charge(env, work)
            try:
                return _checked_result(env, fn(env, *vals))
            except EvalError:
                raise
            except TypeError as e:
                if "positional argument" in str(e) or "required" in str(e):
                    raise EvalError(f"wrong number of arguments for {name}()") from None
                raise EvalError(f"{name}(): {e}") from None
            except (ValueError, ArithmeticError, LookupError) as e:
                raise EvalError(f"{name}(): {e}") from None
        return call, (not rnd) and all(p[1] for p in parts)

    def _c_Attribute(self, node):
        raise EvalError(f"attribute access ('{ast.unparse(node)}') is not allowed")

    _HANDLERS = {
        ast.Expression: _c_Expression, ast.Constant: _c_Constant, ast.Name: _c_Name,
        ast.List: _c_List, ast.Tuple: _c_Tuple, ast.BinOp: _c_BinOp, ast.UnaryOp: _c_UnaryOp,
        ast.BoolOp: _c_BoolOp, ast.Compare: _c_Compare, ast.IfExp: _c_IfExp,
        ast.Subscript: _c_Subscript, ast.Call: _c_Call, ast.Attribute: _c_Attribute,
    }


def _describe(node) -> str:
    kinds = {"Lambda": "lambda", "ListComp": "list comprehension", "GeneratorExp": "generator",
             "SetComp": "set comprehension", "DictComp": "dict comprehension",
             "JoinedStr": "f-string", "NamedExpr": "assignment expression", "Await": "await",
             "Yield": "yield", "YieldFrom": "yield", "Starred": "starred item", "Set": "set",
             "Dict": "dict"}
    return kinds.get(type(node).__name__, f"syntax {type(node).__name__}")


def compile_expr(source: str, variables, fold_env: Env | None = None) -> Compiled:
    """Parse and check ``source``; raise EvalError saying what is not allowed.

    ``fold_env`` evaluates the constant parts; pass one Env to several calls so that they
    share one work budget (a template's expressions do), else each call has its own.
    """
    source = source.strip()
    if len(source) > MAX_EXPR_CHARS:
        raise EvalError(f"expression too long ({len(source)} characters; at most {MAX_EXPR_CHARS}); "
                        "split it over several #init variables")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as e:
        raise EvalError(f"not a valid expression ({e.msg})") from None
    except (ValueError, RecursionError, MemoryError):
        raise EvalError("not a valid expression") from None
    c = _Compiler(variables, fold_env if fold_env is not None else Env({}))
    try:
        fn = c.build(tree)
    except RecursionError:
        raise EvalError("expression nested too deeply") from None
    return Compiled(fn, frozenset(c.names), c.random, source)
