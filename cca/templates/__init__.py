"""Offline instantiation of GSM-Symbolic style templates (upstream never released its code).

Public API::

    load_template(path, template_id=None) -> Template        # parse; raises TemplateError
    load_template_set(directory) -> list[Template]           # ids "<dir name>/<stem>", sorted
    check_defaults(t, against_original=True, allow_known=False) -> str | None
    draw_instances(t, n, seed, max_tries=1_000_000, time_limit=600.0) -> list[Instance]
    instances_frame(instances) -> pandas.DataFrame
    verify_instance(t, row) -> list[str]
    format_answer(x) -> str
    KNOWN_UPSTREAM_DEFECTS: dict[str, str]                   # see known_defects.py

Template language (module ``parse``): ``{var,default}`` slots in the question, ``#init:``
lines ``- [$]name = expr`` / ``- a, b = expr`` (``$`` marks a numeric variable),
``#conditions:`` lines ``- expr``, ``#answer: expr``; the solution template has ``{expr}``
holes and ends with ``#### {expr}``. Expressions are evaluated by a whitelisting
interpreter (module ``evaluator``), never by eval/exec; numbers are exact rationals
(module ``values``).

Drawing (module ``instantiate``): an ``#init`` expression that yields a list or range is
a domain and one item is drawn from it uniformly; conditions are rejection-sampled.

DSL functions:

``range(a[, b[, c]])``
    Python's range (a lazy domain, at most 10**6 items).
``sample(xs)`` / ``sample(xs, k)``
    one uniform item / k distinct items (ordered) of a list or range.
``sample_sequential(xs, k)``
    k consecutive items of xs from a uniform start (no wrap-around), e.g. weekdays.
``shuffle_list(xs)``
    a shuffled copy.
``list(xs)``, ``len``, ``sum``, ``min``, ``max``, ``abs``
    as in Python.
``arange`` / ``np.arange`` / ``frange(start, stop[, step])``
    numpy's arange, computed exactly (``np.arange(0.25, 2.5, 0.25)`` = 0.25 ... 2.25).
``np.random.randint(low, high[, size])``
    numpy semantics: integers in [low, high), a list of ``size`` draws.
``numbers_within(a, b)``
    the whole numbers a..b inclusive written as words: ``Worded("forty-two", 42)``.
``is_int(x)``
    x is a whole number (exactly: no float tolerance is needed).
``int(x)``
    truncation toward zero.
``divides(a, b)``
    a is a whole multiple of b (``a / b`` is whole; False when b is 0).
``Fraction(a[, b])``
    the exact fraction a/b.
``round(x[, n])``
    Python rounding (half to even), exact.
``fix_floats(x)``
    upstream's float-noise cleaner; numbers are exact here, so it only rounds to 10 places.
``format_frac(x)``
    "p/q" (or the integer), for solution texts.

A drawn ``(text, number)`` pair becomes a Worded quantity: its text in the question, its
number in arithmetic, comparisons and in the solution; ``w[0]``/``w[1]`` index the pair.

Vocabularies (module ``vocabularies``): names_male, names_female, names (both), weekdays
(Monday..Sunday), colors, fruits (all with a regular "+s" plural), cities, sports,
currencies_sym ($ € £), weights_sm (ounce, gram), weights_med (pound, kilogram),
length_lg (mile, kilometer); Worded quantities: multi_times (twice, three/four/five
times), multiple_ice (twice, thrice), multiple (double, triple, quadruple), fractions
(half, a third, a quarter, a fifth, two-thirds, three-quarters), fraction_alph (half,
a third, a quarter, a fifth, a tenth), fraction_nums (1/2, 1/3, 1/4, 1/5, 2/3, 3/4, 2/5,
3/5, 1/10), fraction_alnum (words and numerals, e.g. half, 1/2, one-third, two-thirds,
three quarters, one-fifth, three-fifths, 1/16); fraction_decimals are plain numbers
(0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75).
"""
from cca.templates.defaults import check_defaults, default_problems
from cca.templates.instantiate import Instance, draw_instances, instances_frame, verify_instance
from cca.templates.known_defects import KNOWN_UPSTREAM_DEFECTS, UNDRAWABLE_UPSTREAM
from cca.templates.parse import Template, TemplateError, load_template, load_template_set
from cca.templates.values import format_answer

__all__ = ["KNOWN_UPSTREAM_DEFECTS", "UNDRAWABLE_UPSTREAM", "Instance", "Template", "TemplateError",
           "check_defaults", "default_problems", "draw_instances", "format_answer", "instances_frame",
           "load_template", "load_template_set", "verify_instance"]
