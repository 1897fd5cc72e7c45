"""Drawing variable values: rejection sampling with two exact shortcuts.

Variables are drawn in ``#init`` order; an init expression that yields a list or range
is a domain and one item is drawn from it uniformly (so ``range(2, 10)``, ``[0.25, 0.5]``,
``np.arange(...)`` and ``sample(...)`` all draw one value); a drawn ``(text, number)``
pair becomes a Worded quantity. Each condition is tested as soon as its variables are
set and the whole draw restarts on failure: rejection sampling, so every valid
assignment keeps its prior probability. Two shortcuts keep exactly that distribution:
a variable that completes a ``lhs == rhs`` condition linear in it is solved for instead
of drawn (:func:`schedule`), and :class:`Exhaustive` enumerates the valid combinations
of a template too rare to reject-sample.
"""
from __future__ import annotations

from fractions import Fraction

from cca.templates.evaluator import Env, EvalError, is_collection, show, wrap_item
from cca.templates.parse import Template
from cca.templates.values import is_number, norm_number, plain

MAX_LEAVES = 1_000_000


def schedule(t: Template):
    """Init statements interleaved with each condition right after its last variable.

    A variable drawn uniformly from a fixed list of distinct numbers that is the last one
    of a ``lhs == rhs`` condition linear in it is solved for instead of drawn ("solve"
    step), then looked up in its list. That keeps the exact rejection-sampling
    distribution (one solution, each item has the same prior weight) and saves a factor
    of the list's length in draws.
    """
    pos = {v: i for i, s in enumerate(t.init) for v in s.targets}
    after = [[] for _ in range(len(t.init) + 1)]
    for c in t.conditions:
        k = max((pos[v] + 1 for v in c.expr.names), default=0)
        after[k].append(c)
    steps = [("check", c) for c in after[0]]
    for i, s in enumerate(t.init):
        solver = _solver(s, after[i + 1])
        if solver:
            steps.append(("solve", (s, *solver)))
        else:
            dom = _fixed_items(s)
            steps.append(("pick", (s.targets[0], dom)) if dom else ("init", s))
        steps.extend(("check", c) for c in after[i + 1])
    return steps


def _fixed_items(stmt):
    """The items of a fixed list that ``stmt`` draws one of uniformly, or None."""
    if len(stmt.targets) != 1 or not stmt.uniform or stmt.domain is None:
        return None
    try:
        dom = stmt.domain(Env({}))
    except EvalError:
        return None
    if not is_collection(dom) or len(dom) == 0:
        return None
    return dom if isinstance(dom, range) else [wrap_item(x) for x in dom]


def _solver(stmt, conds):
    if len(stmt.targets) != 1 or not stmt.uniform or stmt.domain is None:
        return None
    v = stmt.targets[0]
    cond = next((c for c in conds if v in c.linear_in), None)
    if cond is None:
        return None
    try:
        dom = stmt.domain(Env({}))
    except EvalError:
        return None
    if isinstance(dom, range):
        return cond.eq_diff, v, dom, 1
    if not is_collection(dom):
        return None
    items = [wrap_item(x) for x in dom]
    if not items or not all(is_number(plain(x)) for x in items):
        return None
    table = {}
    for x in items:
        table.setdefault(norm_number(plain(x)), []).append(x)
    return cond.eq_diff, v, table, max(len(x) for x in table.values())


def _solve_step(step, env: Env) -> bool:
    """Set ``v`` to the solution of the condition; False when it is not in the domain.

    With repeated values in the list, a solution held by c of the items is kept with
    probability c / (largest c), which keeps the rejection-sampling weights exact.
    """
    stmt, diff, v, dom, cmax = step
    env.vars[v] = 0
    f0 = plain(diff(env))
    env.vars[v] = 1
    f1 = plain(diff(env))
    if not (is_number(f0) and is_number(f1)):
        assign(stmt, env)
        return True
    if f0 == f1:  # does not depend on v for these values: holds for all or none
        assign(stmt, env)
        return f0 == 0
    u = norm_number(-Fraction(f0) / (Fraction(f1) - Fraction(f0)))
    if isinstance(dom, range):
        if not isinstance(u, int) or u not in dom:
            return False
        env.vars[v] = u
        return True
    items = dom.get(u)
    if items is None:
        return False
    if len(items) < cmax and env.rng.randrange(cmax) >= len(items):
        return False
    env.vars[v] = items[env.rng.randrange(len(items))] if len(items) > 1 else items[0]
    return True


def assign(stmt, env: Env):
    v = stmt.expr(env)
    if len(stmt.targets) == 1:
        if is_collection(v):
            if len(v) == 0:
                raise EvalError("nothing to draw from (empty list)")
            v = v[env.rng.randrange(len(v))]
        env.vars[stmt.targets[0]] = wrap_item(v)
        return
    v = plain(v)
    if not isinstance(v, (list, tuple)) or len(v) != len(stmt.targets):
        raise EvalError(f"needs {len(stmt.targets)} values to unpack, got {show(v)}")
    for name, x in zip(stmt.targets, v):
        env.vars[name] = wrap_item(x)


class Exhaustive:
    """All valid values of the constrained variables, for templates too rare to reject-sample.

    Applies when every variable that a condition reads is drawn uniformly from a fixed
    list. The valid combinations (list positions) are enumerated depth-first, each
    condition tested as soon as its variables are set (equality conditions solved as in
    the "solve" step); a draw then picks one combination uniformly, which is the same
    distribution as rejection sampling, and draws the unconstrained variables as usual.
    """

    def __init__(self, t: Template, budget: int, deadline: float | None = None):
        constrained = set()
        for c in t.conditions:
            constrained |= c.expr.names
        self.stmts = [s for s in t.init if set(s.targets) & constrained]
        self.free = {id(s) for s in t.init if not set(s.targets) & constrained}
        self.ok = all(len(s.targets) == 1 and s.uniform and s.domain is not None for s in self.stmts)
        self.leaves = None
        if not self.ok:
            return
        pos = {s.targets[0]: i for i, s in enumerate(self.stmts)}
        self.after = [[] for _ in range(len(self.stmts) + 1)]
        for c in t.conditions:
            self.after[max((pos[v] + 1 for v in c.expr.names), default=0)].append(c)
        env = Env({}, deadline=deadline)
        try:
            self.domains = [s.domain(env) for s in self.stmts]
        except EvalError:
            self.ok = False
            return
        if not all(is_collection(d) for d in self.domains):
            self.ok = False
            return
        self.items = [d if isinstance(d, range) else [wrap_item(x) for x in d] for d in self.domains]
        self.solvers = []
        for i, s in enumerate(self.stmts):
            sol = _solver(s, self.after[i + 1])
            index = None
            if sol is not None and not isinstance(self.items[i], range):
                index = {}
                for j, x in enumerate(self.items[i]):
                    index.setdefault(norm_number(plain(x)), []).append(j)
            self.solvers.append((sol, index))
        self.budget = budget
        self.leaves = self._enumerate(env)

    def _holds(self, conds, env):
        try:
            return all(plain(c.expr(env)) for c in conds)
        except EvalError:
            return False

    def _candidates(self, i, env):
        sol, index = self.solvers[i]
        dom = self.items[i]
        if sol is None:
            return range(len(dom))
        diff, v = sol[0], sol[1]
        try:
            env.vars[v] = 0
            f0 = plain(diff(env))
            env.vars[v] = 1
            f1 = plain(diff(env))
        except EvalError:
            return range(len(dom))
        if not (is_number(f0) and is_number(f1)):
            return range(len(dom))
        if f0 == f1:  # the condition does not depend on v here: all or nothing
            return range(len(dom)) if f0 == 0 else ()
        u = norm_number(-Fraction(f0) / (Fraction(f1) - Fraction(f0)))
        if isinstance(dom, range):
            return (dom.index(u),) if isinstance(u, int) and u in dom else ()
        return index.get(u, ())

    def _enumerate(self, env):
        leaves, prefix, cost = [], [], 0
        if not self._holds(self.after[0], env):
            return leaves
        n = len(self.stmts)

        def rec(i):
            nonlocal cost
            if i == n:
                leaves.append(tuple(prefix))
                if len(leaves) > MAX_LEAVES:
                    raise OverflowError
                return
            name, dom, conds = self.stmts[i].targets[0], self.items[i], self.after[i + 1]
            for j in self._candidates(i, env):
                cost += 1 + len(conds)
                if cost > self.budget:
                    raise OverflowError
                env.vars[name] = dom[j]
                if self._holds(conds, env):
                    prefix.append(j)
                    rec(i + 1)
                    prefix.pop()
            env.vars.pop(name, None)

        try:
            rec(0)
        except (OverflowError, RecursionError):  # over budget, or too many variables to recurse
            return None
        return leaves

    def draw(self, t: Template, env: Env):
        env.vars = {}
        leaf = self.leaves[env.rng.randrange(len(self.leaves))]
        for s, dom, j in zip(self.stmts, self.items, leaf):
            env.vars[s.targets[0]] = dom[j]
        for s in t.init:
            if id(s) in self.free:
                assign(s, env)
        return answer_number(t, env)


def answer_number(t, env):
    a = plain(t.answer_expr(env))
    if not is_number(a):
        raise EvalError(f"#answer is not a number: {show(a)}")
    a = norm_number(a)
    try:
        float(a)
    except OverflowError:
        raise EvalError(f"#answer {show(a)} is too large (beyond a float's range)") from None
    return a


def _step_line(kind, x):
    return x.line if kind in ("init", "check") else x[0].line if kind == "solve" else None


def try_draw(t: Template, steps, env: Env):
    """One draw: the answer, or None if a condition fails."""
    env.vars = {}
    rng, values = env.rng, env.vars
    kind = x = None
    try:
        for kind, x in steps:
            if kind == "pick":
                dom = x[1]
                values[x[0]] = dom[rng.randrange(len(dom))]
            elif kind == "init":
                assign(x, env)
            elif kind == "solve":
                if not _solve_step(x, env):
                    return None
            elif not plain(x.expr(env)):
                return None
        kind, x = "answer", None
        return answer_number(t, env)
    except EvalError as e:
        line = t.answer_line if kind == "answer" else _step_line(kind, x)
        raise EvalError(f"{line}: {e}" if line else str(e)) from None
