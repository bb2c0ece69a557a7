"""TASO's cost-based backtracking search over rewrites, and translation validation with blame.

Graphs wait in a priority queue, cheapest first. Each popped graph gets every rule
applied at every match; a new graph is kept if it has not been seen (canonical
hash) and costs less than `alpha` times the best so far, so slightly worse graphs
may lead to better ones. Limits: pops and seconds. Each state remembers the rule
that made it and the nodes that rule created, so a failed translation validation
names the rule and nodes at fault.

The equality-saturation engine (saturation.py) is the alternative to `search`, with the
same rules, verifier and cost model.
"""
from __future__ import annotations

import hashlib
import heapq
import itertools
import time
from dataclasses import dataclass, field

import numpy as np

from ...errors import NnforgeError, ShapeError
from ...ir import interpret
from .cost import graph_seconds
from .engine import apply, find_matches, index_by_op


class TranslationValidationError(NnforgeError):
    """The optimized graph computes something else than the original."""


@dataclass
class State:
    graph: object
    cost: float
    parent: "State | None" = None
    rule: str = ""
    created: list = field(default_factory=list)

    def history(self) -> list:
        """The states from the input graph to this one."""
        chain, s = [], self
        while s is not None:
            chain.append(s)
            s = s.parent
        return chain[::-1]


@dataclass
class SearchReport:
    cost_before: float
    cost_after: float
    fired: list
    pops: int
    seen: int
    seconds: float

    def __str__(self):
        counts: dict = {}
        for name in self.fired:
            counts[name] = counts.get(name, 0) + 1
        fired = ", ".join(f"{k} x{v}" for k, v in counts.items()) or "none"
        return (f"cost {self.cost_before * 1e6:.1f} us -> {self.cost_after * 1e6:.1f} us "
                f"({self.cost_after / self.cost_before:.2f}x); rules fired: {fired}; "
                f"{self.pops} graphs expanded, {self.seen} seen, {self.seconds:.2f} s")


_ARRAY_HASH: dict = {}


def _array_digest(a) -> str:
    entry = _ARRAY_HASH.get(id(a))
    if entry is None or entry[0] is not a:
        entry = (a, hashlib.sha1(np.ascontiguousarray(a).tobytes() + str(a.shape).encode()).hexdigest())
        _ARRAY_HASH[id(a)] = entry
    return entry[1]


def canonical_hash(graph) -> str:
    """Equal for graphs that compute the same terms, whatever their node/value names."""
    term: dict = {v.name: f"in:{v.name}" for v in graph.inputs}

    def of(v):
        return _array_digest(v.data) if v.is_constant else term[v.name]

    for node in graph.nodes:
        h = hashlib.sha1(repr((node.op, sorted(node.attrs.items()), [of(v) for v in node.inputs]))
                         .encode()).hexdigest()
        for i, v in enumerate(node.outputs):
            term[v.name] = f"{h}#{i}"
    return hashlib.sha1("|".join(of(v) for v in graph.outputs).encode()).hexdigest()


def search(graph, rules, alpha: float = 1.05, max_pops: int = 200, time_limit: float = 20.0):
    """Cost-guided backtracking search (TASO, SOSP'19, Alg. 2).

    Args:
        graph: the input ir.Graph (not modified).
        rules: verified Rules.
        alpha: keep graphs costing less than alpha * best.
        max_pops, time_limit: search budget.
    Returns:
        (best State, SearchReport).
    """
    t0 = time.time()
    start = State(graph, graph_seconds(graph))
    best, tie = start, itertools.count()
    queue = [(start.cost, next(tie), start)]
    seen = {canonical_hash(graph)}
    pops = 0
    while queue and pops < max_pops and time.time() - t0 < time_limit:
        _, _, state = heapq.heappop(queue)
        pops += 1
        by_op = index_by_op(state.graph)
        for rule in rules:
            for m in find_matches(state.graph, rule, by_op):
                if time.time() - t0 > time_limit:  # one pop of a big graph takes seconds
                    break
                try:
                    new, created = apply(state.graph, m)
                except ShapeError:  # TASO checks shapes when a rule fires; this one does not fit
                    continue
                key = canonical_hash(new)
                if key in seen:
                    continue
                seen.add(key)
                child = State(new, graph_seconds(new), state, rule.name, created)
                if child.cost < best.cost:
                    best = child
                if child.cost < alpha * best.cost:
                    heapq.heappush(queue, (child.cost, next(tie), child))
    fired = [s.rule for s in best.history()[1:]]
    return best, SearchReport(start.cost, best.cost, fired, pops, len(seen), time.time() - t0)


def mismatching_feeds(original, graph, rtol: float = 1e-4, seeds=(0, 1)):
    """Random feeds (one per seed) on which `graph`'s outputs differ from `original`'s, or None."""
    from ..manager import outputs_differ, random_feeds

    for seed in seeds:
        feeds = random_feeds(original, seed)
        pairs = zip(interpret(original, feeds), interpret(graph, feeds))
        if any(outputs_differ(a, b, rtol) for a, b in pairs):
            return feeds
    return None


def validate(state: State, rtol: float = 1e-4, seeds=(0, 1)):
    """Interpret the optimized graph against the original on random inputs; on a mismatch
    replay the rewrite history and raise TranslationValidationError naming the first
    rule (and the nodes it made) after which the outputs differ."""
    from ..manager import outputs_differ

    chain = state.history()
    original = chain[0].graph
    feeds = mismatching_feeds(original, state.graph, rtol, seeds)
    if feeds is not None:
        prev = interpret(original, feeds)
        for step in chain[1:]:
            got = interpret(step.graph, feeds)
            bad = [i for i, (a, b) in enumerate(zip(prev, got)) if outputs_differ(a, b, rtol)]
            if bad:
                out = original.outputs[bad[0]].name
                raise TranslationValidationError(
                    f"translation validation failed: rule {step.rule!r} changed output {out!r} "
                    f"(nodes it created: {', '.join(step.created) or 'none'}); the rule's "
                    f"implementation does not match what was proved")
            prev = got
        raise TranslationValidationError("translation validation failed (not reproducible step by step)")
