"""Values of the template DSL: exact numbers, worded quantities, rendering and parsing.

Numbers are exact: Python ``int`` or ``fractions.Fraction`` (a decimal literal such as
``0.25`` becomes ``Fraction(1, 4)``, ``a / b`` is exact), and a Fraction that is a whole
number is always turned back into an ``int``. So ``is_int``, ``//``, ``%`` and ``int()``
never suffer from float noise (upstream's ``fix_floats`` becomes a no-op).

A :class:`Worded` value is a quantity with a surface form, e.g. ``Worded("half", 1/2)``
from a vocabulary of ``(text, value)`` pairs. It renders as its text in a question, acts
as its value in arithmetic, comparisons and DSL calls, and indexes like the pair:
``w[0]`` is the text, ``w[1]`` the value (templates write ``mult[1]``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from numbers import Rational

Number = int | Fraction


@dataclass(frozen=True)
class Worded:
    text: str
    value: object

    def __getitem__(self, i):
        return (self.text, self.value)[i]

    def __len__(self):
        return 2


def plain(x):
    """The value behind a Worded, anything else unchanged."""
    return x.value if type(x) is Worded else x


def is_number(x) -> bool:
    t = type(x)
    if t is int or t is Fraction or t is float:
        return True
    return t is not bool and isinstance(x, Rational)


def norm_number(x):
    """Exact canonical form: bool/float/Fraction -> int when whole, Fraction otherwise."""
    t = type(x)
    if t is int:
        return x
    if t is Fraction:
        return x.numerator if x.denominator == 1 else x
    if isinstance(x, bool):
        return int(x)
    if isinstance(x, float):
        if x != x or x in (float("inf"), float("-inf")):
            raise ValueError(f"non-finite number {x}")
        x = Fraction(repr(x))
    if isinstance(x, Fraction):
        return int(x.numerator) if x.denominator == 1 else x
    if isinstance(x, int):
        return x
    if isinstance(x, Rational):
        return norm_number(Fraction(x))
    raise TypeError(f"not a number: {x!r}")


def terminating(x: Fraction) -> bool:
    d = x.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def decimal_string(x) -> str | None:
    """Exact decimal digits of a number, or None when the decimal does not terminate."""
    x = norm_number(x)
    if isinstance(x, int):
        return str(x)
    if not terminating(x):
        return None
    sign = "-" if x < 0 else ""
    x = abs(x)
    k = 0
    while (x * 10**k).denominator != 1:
        k += 1
    digits = str((x * 10**k).numerator).rjust(k + 1, "0")
    return f"{sign}{digits[:-k]}.{digits[-k:]}"


def format_answer(x) -> str:
    """Canonical answer string: ``10``, ``32.5``, ``-3``; never ``10.0``.

    Accepts int, float, Fraction (or a Worded quantity). A value without a finite
    decimal expansion (e.g. 1/3) is written as the fraction ``1/3``.
    """
    x = norm_number(plain(x))
    s = decimal_string(x)
    return s if s is not None else f"{x.numerator}/{x.denominator}"


def render_value(x) -> str:
    """How a computed value is written into question or solution text."""
    if isinstance(x, Worded):
        return x.text
    if isinstance(x, str):
        return x
    if is_number(x):
        return format_answer(x)
    if isinstance(x, (list, tuple)):
        return ", ".join(render_value(v) for v in x)
    return str(x)


# ---------------------------------------------------------------- English number words
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINALS = {"half": 2, "halves": 2, "third": 3, "quarter": 4, "fourth": 4, "fifth": 5,
             "sixth": 6, "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10, "twelfth": 12,
             "sixteenth": 16, "twentieth": 20, "hundredth": 100}
_MULTIPLES = {"once": 1, "twice": 2, "thrice": 3, "double": 2, "triple": 3, "quadruple": 4,
              "quintuple": 5}


def number_to_words(n: int) -> str:
    """``42 -> "forty-two"``, ``305 -> "three hundred five"`` (0 <= n < 10**6)."""
    if not 0 <= n < 10**6:
        raise ValueError(f"number_to_words supports 0..999999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        t, o = divmod(n, 10)
        return _TENS[t] + (f"-{_ONES[o]}" if o else "")
    if n < 1000:
        h, r = divmod(n, 100)
        return f"{_ONES[h]} hundred" + (f" {number_to_words(r)}" if r else "")
    th, r = divmod(n, 1000)
    return f"{number_to_words(th)} thousand" + (f" {number_to_words(r)}" if r else "")


def _words_to_int(s: str) -> int | None:
    words = s.replace("-", " ").split()
    if not words:
        return None
    total = cur = 0
    for w in words:
        if w in _ONES:
            cur += _ONES.index(w)
        elif w in _TENS[2:]:
            cur += 10 * _TENS.index(w)
        elif w == "hundred":
            cur = max(cur, 1) * 100
        elif w == "thousand":
            total += max(cur, 1) * 1000
            cur = 0
        elif w == "and":
            continue
        else:
            return None
    return total + cur


_NUM_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_FRAC_RE = re.compile(r"^([+-]?\d+)\s*/\s*(\d+)$")
MAX_QUANTITY_CHARS = 200


def parse_quantity(text: str):
    """Read a slot default as a number, or None.

    Understands digits (``12``, ``1.50``, ``.40``, ``400 000``, ``1,000``), fractions
    (``1/2``), English number words (``forty-two``, ``Twenty``), multiplicatives
    (``twice``, ``triple``, ``three times``) and fraction words (``half``, ``a third``,
    ``two-thirds``, ``three quarters``).
    """
    s = " ".join(text.strip().lower().split())
    if len(s) > MAX_QUANTITY_CHARS:  # no quantity is written that long (int() refuses over 4300 digits)
        return None
    s = re.sub(r"(?<=\d)[ ,](?=\d{3}\b)", "", s)
    if _NUM_RE.match(s):
        return norm_number(Fraction(s))
    m = _FRAC_RE.match(s)
    if m and int(m.group(2)) != 0:
        return norm_number(Fraction(int(m.group(1)), int(m.group(2))))
    if s in _MULTIPLES:
        return _MULTIPLES[s]
    if s.endswith(" times"):
        n = parse_quantity(s[: -len(" times")])
        return n if isinstance(n, int) else None
    n = _words_to_int(s)
    if n is not None:
        return n
    # fraction words: "[a|an|one|two|...] [-| ] half|third(s)|quarter(s)|..."
    m = re.match(r"^(?:(a|an|[a-z]+)[ -])?([a-z]+?)(s)?$", s)
    if m:
        num_word, ordinal = m.group(1), m.group(2)
        if ordinal == "halve":
            ordinal = "halves"
        if ordinal in _ORDINALS:
            k = 1 if num_word in (None, "a", "an") else _words_to_int(num_word)
            if k is not None:
                return norm_number(Fraction(k, _ORDINALS[ordinal]))
    return None
