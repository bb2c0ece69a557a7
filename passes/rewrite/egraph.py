"""Equality saturation (Tensat, MLSys'21) with the same verified rule table as the TASO search.

An e-graph holds many equivalent graphs at once: e-classes of equal tensors, each a set
of e-nodes `(op, attribute key, child classes)`. A multi-output op (Split) is one e-node
in a tuple class, read through `$get` projections, so extraction pays for it once.
Leaves are `$input` (by name) and `$const` (by content digest; the array is class data).

Rules stay data: their lhs is e-matched (pattern.Term against e-classes), their
precondition and `let` see the match through Value-like views of e-classes (type,
constant data, a producer), and their rhs is built by pattern.build into new e-nodes that
are unioned with the matched classes. Preconditions about uses (`private`) always hold
here: whether a fused and an unfused copy both survive is the extraction's business.

Limits: iterations, e-nodes, seconds, and how many iterations run multi-root rules
(merging parallel branches makes O(n^2) pairs per iteration).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ...errors import NnforgeError
from ...ir import TensorType, get_op
from .engine import Match
from .pattern import Star, Var, build, match_attrs
from .search import _array_digest

INPUT, CONST, GET = "$input", "$const", "$get"


@dataclass
class Limits:
    """Bounds of one saturation run.

    Args:
        iterations: rounds of match-all-then-apply-all.
        nodes: stop once the e-graph holds this many e-nodes.
        seconds: wall-clock budget for saturation (extraction has its own).
        multi_iterations: rounds in which multi-root rules (merges) run.
        multi_matches: multi-root matches applied per round, oldest classes first (merges
            of merges grow quadratically: 3 parallel convs make 3 pairs, then 15, then 210).
    """

    iterations: int = 8
    nodes: int = 20_000
    seconds: float = 5.0
    multi_iterations: int = 3
    multi_matches: int = 300


class ClassView:
    """An e-class seen as an ir.Value by rule preconditions and lets."""

    __slots__ = ("eg", "id")

    def __init__(self, eg, cid):
        self.eg, self.id = eg, cid

    @property
    def type(self):
        return self.eg.types[self.id]

    @property
    def data(self):
        return self.eg.consts.get(self.eg.find(self.id))

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def name(self) -> str:
        return f"e{self.id}"

    @property
    def producer(self):
        return self.eg.producer_view(self.id)


class NodeView:
    """An e-node seen as an ir.Node (op, attrs, inputs, outputs as ClassViews)."""

    def __init__(self, eg, enode, cid):
        op, key, kids = enode
        self.op, self.attrs, self.name = op, eg.attrs[key], f"e{cid}_{op.lower()}"
        self.inputs = [eg.view(k) for k in kids]
        self.outputs = [eg.view(c) for c in eg.outputs_of(cid)]


class _NoUses:
    """The `graph` of an e-graph match: use counts are the extraction's concern."""

    outputs: list = []

    @staticmethod
    def users() -> dict:
        return {}


class EGraph:
    """E-classes of equal tensors; union-find, hash-consing and congruence rebuilding."""

    def __init__(self):
        self.parent: list[int] = []
        self.types: list = []              # class id -> TensorType, or a tuple for multi-output ops
        self.classes: dict[int, set] = {}  # root id -> e-nodes
        self.consts: dict[int, np.ndarray] = {}
        self.memo: dict[tuple, int] = {}   # canonical e-node -> class id
        self.attrs: dict[str, dict] = {}   # attribute key -> attributes
        self.origin: dict[tuple, tuple] = {}  # e-node -> (rule name or "", node name hint, application)
        self.applications: list[tuple] = []   # application -> (rule name, applications whose e-nodes it matched)
        self.rewired: list[tuple] = []        # (application, target classes, rhs e-nodes) of rules that made no e-node
        self.gets: dict[int, list] = {}    # tuple class -> its `$get` classes
        self._views: dict[int, ClassView] = {}

    # -- structure ------------------------------------------------------------
    def find(self, cid: int) -> int:
        while self.parent[cid] != cid:
            self.parent[cid] = self.parent[self.parent[cid]]
            cid = self.parent[cid]
        return cid

    def canon(self, enode: tuple) -> tuple:
        op, key, kids = enode
        return op, key, tuple(self.find(k) for k in kids)

    def add(self, enode: tuple, type, origin: tuple) -> int:
        """The class of `enode`, made (with `type`) if the e-node is new."""
        enode = self.canon(enode)
        if enode in self.memo:
            return self.find(self.memo[enode])
        cid = len(self.parent)
        self.parent.append(cid)
        self.types.append(type)
        self.classes[cid] = {enode}
        self.memo[enode] = cid
        self.origin.setdefault(enode, origin)
        return cid

    def add_const(self, data, origin=("", "const", -1), by_content: bool = True) -> int:
        """The class of a constant; `by_content` shares it with equal constants (hashes the data)."""
        data = np.asarray(data)
        key = _array_digest(data) if by_content else f"new{len(self.parent)}"
        cid = self.add((CONST, key, ()), TensorType.of(data), origin)
        self.consts.setdefault(cid, data)
        return cid

    def add_op(self, op: str, kids, attrs: dict, types, origin: tuple) -> list:
        """Class ids of the outputs of `op(kids){attrs}` with inferred output `types`."""
        key = repr(sorted(attrs.items()))
        self.attrs.setdefault(key, dict(attrs))
        if len(types) == 1:
            return [self.add((op, key, tuple(kids)), types[0], origin)]
        tup = self.add((op, key, tuple(kids)), tuple(types), origin)
        outs = [self.add((GET, i, (tup,)), t, origin) for i, t in enumerate(types)]
        self.gets.setdefault(tup, outs)
        return outs

    def outputs_of(self, cid: int) -> list:
        """The classes a class stands for as node outputs: its `$get`s if a tuple, else itself."""
        cid = self.find(cid)
        return [self.find(g) for g in self.gets[cid]] if cid in self.gets else [cid]

    def union(self, a: int, b: int) -> bool:
        """Merge two classes of the same type; False if already one (or types differ)."""
        a, b = self.find(a), self.find(b)
        if a == b or self.types[a] != self.types[b]:
            return False
        if len(self.classes[a]) < len(self.classes[b]):
            a, b = b, a
        self.parent[b] = a
        self.classes[a] |= self.classes.pop(b)
        if b in self.consts:
            self.consts.setdefault(a, self.consts.pop(b))
        if b in self.gets:
            self.gets.setdefault(a, self.gets.pop(b))
        return True

    def rebuild(self):
        """Restore congruence: e-nodes equal after canonicalizing children share a class."""
        self._views.clear()
        while True:
            self.memo, same = {}, []
            for cid in list(self.classes):
                nodes = set()
                for n in self.classes[cid]:
                    c = self.canon(n)
                    if n in self.origin:
                        self.origin.setdefault(c, self.origin[n])
                    nodes.add(c)
                self.classes[cid] = nodes
                for n in nodes:
                    other = self.memo.setdefault(n, cid)
                    if other != cid:
                        same.append((other, cid))
            if not same:
                return
            for a, b in same:
                self.union(a, b)

    @property
    def size(self) -> int:
        return len(self.memo)  # distinct e-nodes (exact after rebuild)

    def add_graph(self, graph) -> dict:
        """Put every node of an ir.Graph in; returns value name -> class id (all values)."""
        ids = {v.name: self.add((INPUT, v.name, ()), v.type, ("", v.name, -1)) for v in graph.inputs}

        def cid(v):
            if v.is_constant:
                ids[v.name] = self.add_const(v.data, ("", v.name, -1))
            return ids[v.name]

        for node in graph.nodes:
            outs = self.add_op(node.op, [cid(v) for v in node.inputs], node.attrs,
                               [v.type for v in node.outputs], ("", node.name, -1))
            ids.update((v.name, c) for v, c in zip(node.outputs, outs))
        for v in graph.outputs:
            cid(v)
        return ids

    # -- views for rule preconditions -------------------------------------------
    def view(self, cid: int) -> ClassView:
        cid = self.find(cid)
        if cid not in self._views:
            self._views[cid] = ClassView(self, cid)
        return self._views[cid]

    def producer_view(self, cid: int):
        """A NodeView of an op e-node computing class `cid` (through `$get` for tuples)."""
        nodes = self.classes[self.find(cid)]
        for op, key, kids in nodes:
            if op == GET:
                tup = self.find(kids[0])
                return next((NodeView(self, n, tup) for n in self.classes[tup] if n[0] != GET), None)
        return next((NodeView(self, n, self.find(cid)) for n in nodes if not n[0].startswith("$")), None)

    # -- e-matching ----------------------------------------------------------------
    def index(self) -> dict:
        """op -> [(e-node, class id)] over op e-nodes (None: all of them), and
        (op, class) -> those of them reading that class (to match later roots of a rule)."""
        by_op: dict = {None: []}
        for cid, nodes in self.classes.items():
            for n in nodes:
                if not n[0].startswith("$"):
                    by_op[None].append((n, cid))
                    by_op.setdefault(n[0], []).append((n, cid))
                    for k in set(n[2]):
                        by_op.setdefault((n[0], k), []).append((n, cid))
        return by_op

    def _match_class(self, t, cid, env, nodes):
        if isinstance(t, Var):
            cid = self.find(cid)
            if env.get(t.name, cid) == cid:
                yield {**env, t.name: cid}, nodes
            return
        if t.index is None:
            if not isinstance(self.types[self.find(cid)], tuple):
                for n in list(self.classes[self.find(cid)]):
                    yield from self._match_enode(t, n, self.find(cid), env, nodes)
            return
        for op, key, kids in list(self.classes[self.find(cid)]):
            if op == GET and key == t.index:
                tup = self.find(kids[0])
                for n in list(self.classes[tup]):
                    yield from self._match_enode(t, n, tup, env, nodes)

    def _match_enode(self, t, enode, cid, env, nodes):
        op, key, kids = enode
        if op.startswith("$") or (op != t.op and not t.op.startswith("?")):
            return
        env = dict(env)
        if t.op.startswith("?") and env.setdefault(t.op[1:], op) != op:
            return
        fixed = [a for a in t.args if not isinstance(a, Star)]
        star = len(fixed) != len(t.args)
        if len(kids) < len(fixed) or (not star and len(kids) != len(fixed)):
            return
        if star:
            rest = [self.find(k) for k in kids[len(fixed):]]
            if env.setdefault(t.args[-1].name, rest) != rest:
                return
        if not match_attrs(t, self.attrs[key], env):
            return

        def children(i, env, nodes):
            if i == len(fixed):
                yield env, nodes + [(enode, cid)]
                return
            for e, ns in self._match_class(fixed[i], kids[i], env, nodes):
                yield from children(i + 1, e, ns)

        yield from children(0, env, nodes)

    def matches(self, rule, by_op: dict, start=0, env=None, nodes=(), targets=()):
        """Yield (env, [(e-node, class)], target class ids) for every lhs match of `rule`."""
        if start == len(rule.src):
            yield env or {}, list(nodes), list(targets)
            return
        t = rule.src[start]
        bound = [env[a.name] for a in t.args if isinstance(a, Var) and a.name in (env or {})]
        key = None if t.op.startswith("?") else (t.op, bound[0]) if bound else t.op
        for enode, cid in by_op.get(key, ()):
            tup = isinstance(self.types[cid], tuple)
            if t.index is not None and not (tup and t.index < len(self.types[cid])):
                continue
            outs = self.outputs_of(cid)
            outs = outs if t.index is None else [outs[t.index]]
            if any(o in targets for o in outs):
                continue  # roots are distinct computations
            for e, ns in self._match_enode(t, enode, cid, env or {}, list(nodes)):
                if not any(n in nodes for n in ns[len(nodes):]):
                    yield from self.matches(rule, by_op, start + 1, e, ns, list(targets) + outs)

    def apply(self, rule, env: dict, nodes: list, targets: list) -> bool:
        """Check the precondition, build the rhs, union it with the targets; True if anything changed."""
        def as_view(name, x):
            role = rule.roles.get(name)
            return self.view(x) if role == "tensor" else [self.view(c) for c in x] if role == "star" else x

        m = Match(rule, {k: as_view(k, v) for k, v in env.items()},
                  [NodeView(self, n, c) for n, c in nodes], [self.view(t) for t in targets], _NoUses)
        try:
            if rule.when and not rule.when(m):
                return False
            binds = dict(m)
            binds.update(rule.let(m) if rule.let else {})
            size, app = len(self.parent), len(self.applications)
            outs = build(rule.dst, binds, _Emitter(self, rule.name, app))
        except NnforgeError:  # the rhs does not type-check here (shape validity is checked per match)
            return False
        except (KeyError, IndexError, AttributeError, TypeError, ValueError):
            return False
        if len(outs) != len(targets) or any(o.type != self.types[t] for o, t in zip(outs, targets)):
            return False
        parents = {self.origin.get(self.canon(n), ("", "", -1))[2] for n, _ in nodes} - {-1}
        self.applications.append((rule.name, tuple(sorted(parents))))
        moved = [self.find(t) for t, o in zip(targets, outs) if self.find(t) != self.find(o.id)]
        if len(self.parent) == size and moved:  # the rhs already existed (x*1 -> x): what it rewired to
            self.rewired.append((app, moved, {self.canon(n) for o in outs for n in self.classes[self.find(o.id)]}))
        merged = [self.union(t, o.id) for t, o in zip(targets, outs)]
        return any(merged) or len(self.parent) > size

    def rules_behind(self, choice: dict, roots) -> list:
        """The rule of every application the graph extracted by `choice` (class -> e-node) from
        `roots` rests on: those that made one of its e-nodes, those whose rhs class (made by no
        new e-node) supplies one of its e-nodes where the match was, and, transitively, those
        that made the e-nodes they matched. One entry per application, in application order
        (like the TASO search's `fired`)."""
        used, todo = set(), [self.find(r) for r in roots]
        while todo:
            cid = todo.pop()
            if cid not in used:
                used.add(cid)
                todo.extend(self.find(k) for k in choice[cid][2])
        chosen = {self.canon(choice[c]) for c in used}
        todo = [self.origin.get(n, ("", "", -1))[2] for n in chosen]
        for app, targets, rhs in self.rewired:
            if any(self.find(t) in used for t in targets) and {self.canon(n) for n in rhs} & chosen:
                todo.append(app)
        seen: set = set()
        while todo:
            app = todo.pop()
            if app >= 0 and app not in seen:
                seen.add(app)
                todo.extend(self.applications[app][1])
        return [self.applications[a][0] for a in sorted(seen)]


class _Emitter:
    """pattern.build into the e-graph: arrays become `$const` classes, ops become e-nodes."""

    def __init__(self, eg: EGraph, rule: str, app: int):
        self.eg, self.rule, self.app = eg, rule, app

    def value(self, x):
        if not isinstance(x, np.ndarray):
            return x
        # not hashed: rule-made weights are big and fresh (a repeated match adds a twin at most)
        return self.eg.view(self.eg.add_const(x, (self.rule, "c", self.app), by_content=False))

    def op(self, op, inputs, attrs):
        opdef = get_op(op)
        attrs = opdef.check_attrs(attrs, self.rule)
        types = opdef.infer_types([v.type for v in inputs], attrs, self.rule)
        outs = self.eg.add_op(op, [v.id for v in inputs], attrs, types, (self.rule, op.lower(), self.app))
        return [self.eg.view(c) for c in outs]


@dataclass
class SaturationStats:
    iterations: int
    enodes: int
    eclasses: int
    stop: str      # saturated | iteration limit | node limit | time limit
    applied: int   # rule applications that changed the e-graph
    seconds: float


def saturate(eg: EGraph, rules, limits: Limits) -> SaturationStats:
    """Run the rules on `eg` until nothing changes or a limit is hit.

    Each iteration matches every rule against the e-graph as it stands, then applies the
    matches, then rebuilds congruence. A match already applied is not applied again.
    """
    t0, done, applied, stop, it = time.time(), set(), 0, "iteration limit", 0
    for it in range(1, limits.iterations + 1):
        by_op, found = eg.index(), []
        for rule in rules:
            if len(rule.src) > 1 and it > limits.multi_iterations:
                continue
            for env, nodes, targets in eg.matches(rule, by_op):
                key = (rule.name, tuple(sorted(targets)) if len(rule.src) > 1 else
                       (tuple(targets), repr(sorted(env.items()))))
                if key not in done:
                    found.append((rule, env, nodes, targets, key))
                if time.time() - t0 > limits.seconds:
                    break
        multi = sorted((f for f in found if len(f[0].src) > 1), key=lambda f: max(f[3]))
        found = [f for f in found if len(f[0].src) == 1] + multi[:limits.multi_matches]
        changed = 0
        for rule, env, nodes, targets, key in found:
            if eg.size > limits.nodes or time.time() - t0 > limits.seconds:
                break
            if key not in done:  # the same match may be found twice in one round
                done.add(key)
                changed += eg.apply(rule, env, nodes, targets)
        eg.rebuild()
        applied += changed
        if time.time() - t0 > limits.seconds:
            stop = "time limit"
            break
        if eg.size > limits.nodes:
            stop = "node limit"
            break
        if not changed:
            stop = "saturated"
            break
    return SaturationStats(it, eg.size, len(eg.classes), stop, applied, time.time() - t0)
