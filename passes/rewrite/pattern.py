"""The pattern language of rewrite rules: terms in the IR's own op names, a matcher, a builder.

    Relu(Relu(x))                                   a chain; `x` is a tensor variable
    Transpose(Transpose(x){perm=p}){perm=q}         attribute variables bind attribute values
    Conv(x, w){*a}                                  `*a` binds (lhs) or spreads (rhs) all attributes
    Concat(*xs){axis=1}                             `*xs` binds the remaining inputs (variadic)
    Split(x){axis=k}#1                              `#i` names output i of a multi-output op
    ?op(*xs){*a}                                    an op variable matches any op
    MatMul(x, w1), MatMul(x, w2)                    several roots (they may share variables)

Tensor variables are lowercase names in input positions; a name that occurs twice must
bind the same Value. Attributes a pattern does not mention are unconstrained on the left
and take the schema default on the right. `build` instantiates a term through an
emitter (a graph, or z3 symbolic evaluation), memoizing identical subterms, so the rhs
`Split(MatMul(x, c)){..}#0, Split(MatMul(x, c)){..}#1` makes one Split.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import NnforgeError


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class Star:
    name: str


@dataclass(frozen=True)
class Term:
    """`op(args){attrs, *spread}#index`; attrs: ((key, ("var"|"lit", payload)), ...)."""

    op: str
    args: tuple
    attrs: tuple = ()
    spread: str | None = None
    index: int | None = None


_TOKEN = re.compile(r"\s*(?:(?P<op>\??[A-Z]\w*|\?[a-z]\w*)|(?P<name>[a-z_]\w*)|"
                    r"(?P<num>-?\d+(?:\.\d*)?(?:[eE]-?\d+)?)|(?P<str>\"[^\"]*\")|(?P<p>[(){}\[\],=*#]))")


class _Parser:
    def __init__(self, text: str):
        self.text, self.toks, pos = text, [], 0
        while pos < len(text.rstrip()):
            m = _TOKEN.match(text, pos)
            if not m:
                raise NnforgeError(f"pattern {text!r}: cannot read at column {pos + 1}")
            self.toks.append((m.lastgroup, m.group(m.lastgroup)))
            pos = m.end()
        self.i = 0

    def peek(self, text=None):
        tok = self.toks[self.i] if self.i < len(self.toks) else ("end", "")
        return tok if text is None else tok[1] == text

    def take(self, text=None):
        tok = self.peek()
        if text is not None and tok[1] != text:
            raise NnforgeError(f"pattern {self.text!r}: expected {text!r}, found {tok[1] or 'end'!r}")
        self.i += 1
        return tok

    def roots(self) -> tuple:
        out = [self.arg()]
        while self.peek(","):
            self.take(",")
            out.append(self.arg())
        if self.peek()[0] != "end":
            raise NnforgeError(f"pattern {self.text!r}: unexpected {self.peek()[1]!r}")
        return tuple(out)

    def arg(self):
        if self.peek("*"):
            self.take("*")
            return Star(self.take()[1])
        kind, text = self.take()
        if kind == "name":
            return Var(text)
        if kind != "op":
            raise NnforgeError(f"pattern {self.text!r}: unexpected {text!r}")
        self.take("(")
        args = []
        while not self.peek(")"):
            args.append(self.arg())
            if not self.peek(")"):
                self.take(",")
        self.take(")")
        attrs, spread = [], None
        if self.peek("{"):
            self.take("{")
            while not self.peek("}"):
                if self.peek("*"):
                    self.take("*")
                    spread = self.take()[1]
                else:
                    key = self.take()[1]
                    self.take("=")
                    attrs.append((key, self.attr_value()))
                if not self.peek("}"):
                    self.take(",")
            self.take("}")
        index = None
        if self.peek("#"):
            self.take("#")
            index = int(self.take()[1])
        return Term(text, tuple(args), tuple(attrs), spread, index)

    def attr_value(self):
        kind, text = self.take()
        if kind == "name":
            return ("var", text)
        if text == "[":
            items = []
            while not self.peek("]"):
                items.append(self.attr_value()[1])
                if not self.peek("]"):
                    self.take(",")
            self.take("]")
            return ("lit", tuple(items))
        if kind == "str":
            return ("lit", text[1:-1])
        return ("lit", float(text) if any(c in text for c in ".eE") else int(text))


def parse_pattern(text: str) -> tuple:
    """The root terms of a pattern side."""
    return _Parser(text).roots()


def variables(terms) -> dict:
    """name -> role ("tensor", "star", "attr", "spread", "op") of every variable in `terms`."""
    roles: dict = {}

    def walk(t):
        if isinstance(t, Var):
            roles.setdefault(t.name, "tensor")
        elif isinstance(t, Star):
            roles.setdefault(t.name, "star")
        else:
            if t.op.startswith("?"):
                roles.setdefault(t.op[1:], "op")
            for _, (kind, payload) in t.attrs:
                if kind == "var":
                    roles.setdefault(payload, "attr")
            if t.spread:
                roles.setdefault(t.spread, "spread")
            for a in t.args:
                walk(a)

    for t in terms:
        walk(t)
    return roles


# -- matching -------------------------------------------------------------------
def _bind(env: dict, key: str, value, same=lambda a, b: a == b) -> bool:
    if key in env:
        return same(env[key], value)
    env[key] = value
    return True


def _match_value(t, v, env: dict, nodes: list) -> bool:
    if isinstance(t, Var):
        return _bind(env, t.name, v, lambda a, b: a is b)
    node = v.producer
    if node is None:
        return False
    if t.index is None and len(node.outputs) != 1:
        return False
    if t.index is not None and (t.index >= len(node.outputs) or node.outputs[t.index] is not v):
        return False
    return match_node(t, node, env, nodes)


def match_node(t: Term, node, env: dict, nodes: list) -> bool:
    """Match term `t` at `node`, extending `env` (on failure env may hold partial bindings)."""
    if t.op.startswith("?"):
        if not _bind(env, t.op[1:], node.op):
            return False
    elif node.op != t.op:
        return False
    fixed = [a for a in t.args if not isinstance(a, Star)]
    star = len(fixed) != len(t.args)
    if len(node.inputs) < len(fixed) or (not star and len(node.inputs) != len(fixed)):
        return False
    for a, v in zip(fixed, node.inputs):
        if not _match_value(a, v, env, nodes):
            return False
    if star and not _bind(env, t.args[-1].name, list(node.inputs[len(fixed):]),
                          lambda a, b: len(a) == len(b) and all(x is y for x, y in zip(a, b))):
        return False
    if not match_attrs(t, node.attrs, env):
        return False
    nodes.append(node)
    return True


def match_attrs(t: Term, attrs: dict, env: dict) -> bool:
    """Check `t`'s attribute literals against `attrs` and bind its attribute variables."""
    for key, (kind, payload) in t.attrs:
        got = attrs.get(key)
        if kind == "lit" and got != payload and not (isinstance(got, tuple) and tuple(payload) == got):
            return False
        if kind == "var" and not _bind(env, payload, got):
            return False
    return not t.spread or _bind(env, t.spread, dict(attrs))


def root_targets(t: Term, node) -> list:
    """The values a root term stands for at `node`: output #index, else all outputs."""
    return [node.outputs[t.index]] if t.index is not None else list(node.outputs)


def match_roots(terms, graph, by_op: dict, start=0, env=None, nodes=None, targets=None):
    """Yield (env, nodes, targets) for every way `terms` match in `graph`.

    Args:
        terms: root terms; the first anchors the match, later ones are matched
            against every node of their op with the bindings made so far.
        by_op: op name -> nodes of `graph` (None key: all nodes).
    """
    env, nodes, targets = env or {}, nodes or [], targets or []
    if start == len(terms):
        yield env, nodes, targets
        return
    t = terms[start]
    for node in by_op.get(None if t.op.startswith("?") else t.op, ()):
        e, ns = dict(env), list(nodes)
        if t.index is not None and t.index >= len(node.outputs):
            continue
        if not match_node(t, node, e, ns):
            continue
        outs = root_targets(t, node)
        # roots are distinct computations: a later root may not reuse an earlier root's nodes
        if any(o is p for o in outs for p in targets) or any(
                a is b for a in ns[len(nodes):] for b in nodes):
            continue
        yield from match_roots(terms, graph, by_op, start + 1, e, ns, targets + outs)


# -- building -------------------------------------------------------------------
def build(terms, env: dict, emitter) -> list:
    """Instantiate root terms; returns the flat list of values they stand for.

    `emitter.value(x)` turns a bound object (Value, array) into an operand and
    `emitter.op(op, operands, attrs)` makes a node and returns its outputs.
    """
    memo: dict = {}

    def operand(a):
        if isinstance(a, Var):
            if a.name not in env:
                raise NnforgeError(f"pattern variable {a.name!r} is not bound")
            return [emitter.value(env[a.name])]
        if isinstance(a, Star):
            return [emitter.value(x) for x in env[a.name]]
        outs = term(a)
        return outs if a.index is None else [outs[a.index]]

    def term(t: Term):
        ins = [x for a in t.args for x in operand(a)]
        attrs = dict(env[t.spread]) if t.spread else {}
        for key, (kind, payload) in t.attrs:
            attrs[key] = env[payload] if kind == "var" else payload
        op = env[t.op[1:]] if t.op.startswith("?") else t.op
        key = (op, tuple(id(x) for x in ins), repr(sorted(attrs.items())))
        if key not in memo:
            memo[key] = (emitter.op(op, ins, attrs), ins)  # keep ins alive: ids stay unique
        return memo[key][0]

    out = []
    for r in terms:
        out.extend(operand(r))
    return out
