"""Rules, the matcher over an ir.Graph, and the one rewrite driver.

A rule is data: `Rule(name, lhs, rhs, when, let, examples)`. `apply` is the only
place a rule changes a graph: it copies the graph, builds the rhs with
`Graph.add_node`, redirects users with `Graph.replace_all_uses`, re-sorts and
drops dead nodes. Passes stay pure.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ...errors import NnforgeError, ShapeError
from .pattern import build, match_roots, parse_pattern, variables


class Sym:
    """An example constant whose values are symbolic in proofs and random in numeric checks.

    Args:
        shape: its shape.
        positive: values >= 0 (z3 assumption; numeric draws in [0.5, 1.5]).
    """

    def __init__(self, *shape, positive: bool = False):
        self.shape, self.positive = tuple(shape), positive


@dataclass
class Rule:
    """One verified rewrite `lhs => rhs if when`.

    Args:
        name: kebab-case name (the CLI lists, verifies and disables rules by it).
        lhs, rhs: pattern text (see pattern.py).
        when: precondition `when(m) -> bool` over a Match (shapes, attributes, constness).
        let: `let(m) -> dict` of extra bindings for the rhs: new attribute values,
            new constants (numpy arrays; must also work on z3 object arrays), Values.
        examples: instantiations that must fire (dict of variable -> shape tuple /
            array / Sym / attribute value, or an IR text graph); the verifier proves
            and tests the rule on each.
        non_examples: instantiations where the precondition must reject the match.
        doc: one line, e.g. `relu(relu(x)) -> relu(x)`.
    """

    name: str
    lhs: str
    rhs: str
    when: Callable | None = None
    let: Callable | None = None
    examples: tuple = ()
    non_examples: tuple = ()
    doc: str = ""
    src: tuple = field(init=False, repr=False)
    dst: tuple = field(init=False, repr=False)

    def __post_init__(self):
        self.src, self.dst = parse_pattern(self.lhs), parse_pattern(self.rhs)
        self.roles = variables(self.src)

    def __str__(self):
        return f"{self.name}: {self.lhs} => {self.rhs}"


class Match(dict):
    """Bindings of a rule's variables at one place in a graph, plus the matched nodes and
    the values the rewrite replaces; `graph` is the graph matched in (None in proofs)."""

    def __init__(self, rule, env, nodes, targets, graph=None):
        super().__init__(env)
        self.rule, self.nodes, self.targets, self.graph = rule, nodes, targets, graph


def index_by_op(graph) -> dict:
    by_op: dict = {None: list(graph.nodes)}
    for node in graph.nodes:
        by_op.setdefault(node.op, []).append(node)
    return by_op


def find_matches(graph, rule: Rule, by_op: dict | None = None):
    """Yield every Match of `rule` in `graph` whose precondition holds."""
    by_op = by_op or index_by_op(graph)
    for env, nodes, targets in match_roots(rule.src, graph, by_op):
        m = Match(rule, env, nodes, targets, graph)
        try:
            ok = rule.when(m) if rule.when else True
        except (KeyError, IndexError, AttributeError, TypeError, ValueError):
            ok = False
        if ok:
            yield m


class GraphEmitter:
    """Builds rhs terms into a graph: arrays become constants, ops become add_node calls."""

    def __init__(self, graph, base: str):
        self.graph, self.base = graph, base

    def value(self, x):
        if isinstance(x, np.ndarray):
            return self.graph.constant(x, f"{self.base}_c")
        return x

    def op(self, op, inputs, attrs):
        return self.graph.add_node(op, inputs, attrs, name=f"{self.base}_{op.lower()}")


def _translate(x, values: dict):
    if isinstance(x, list):
        return [_translate(v, values) for v in x]
    if hasattr(x, "producer") and hasattr(x, "type"):
        return values.get(x.name, x)
    return x


def apply(graph, m: Match):
    """Rewrite one match of one rule; the input graph is not changed.

    Returns:
        (new graph, names of the nodes the rule created).
    Raises:
        ShapeError: the rhs does not type-check where the lhs matched, or makes a cycle.
    """
    rule = m.rule
    env = dict(m)
    if rule.let:
        env.update(rule.let(m))
    g = graph.copy()
    values = {v.name: v for n in g.nodes for v in n.inputs + n.outputs}
    values.update((v.name, v) for v in g.inputs)
    env = {k: _translate(v, values) for k, v in env.items()}
    before = {id(n) for n in g.nodes}
    outs = build(rule.dst, env, GraphEmitter(g, m.nodes[0].name if m.nodes else rule.name))
    targets = [values[t.name] for t in m.targets]
    if len(outs) != len(targets):
        raise ShapeError(f"rule {rule.name}: rhs gives {len(outs)} values for {len(targets)} targets")
    for old, new in zip(targets, outs):
        g.replace_all_uses(old, new)
    g.toposort()
    g.remove_dead()
    return g, [n.name for n in g.nodes if id(n) not in before]


def rewrite_to_fixpoint(graph, rules, max_steps: int = 10_000, accept=None):
    """Apply rules (first match first) until none applies; the one greedy driver.

    Args:
        rules: Rules, tried in order.
        accept: optional `accept(old_graph, new_graph) -> bool` (e.g. "cost does not grow").
    Returns:
        (graph, list of (rule name, new node names)) in firing order.
    """
    fired = []
    for _ in range(max_steps):
        by_op = index_by_op(graph)
        for rule in rules:
            new = next(_applications(graph, rule, by_op, accept), None)
            if new is not None:
                graph = new[0]
                fired.append((rule.name, new[1]))
                break
        else:
            return graph, fired
    raise NnforgeError(f"rewrite did not reach a fixpoint in {max_steps} steps")


def _applications(graph, rule, by_op, accept):
    for m in find_matches(graph, rule, by_op):
        try:
            new, created = apply(graph, m)
        except ShapeError:
            continue
        if accept is None or accept(graph, new):
            yield new, created
