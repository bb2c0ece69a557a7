"""The e-graph engine end to end: saturate, extract the cheapest graph, validate it with blame.

    best, report = saturation_search(graph, checked(rules), Limits(seconds=5))
    validate_extraction(best)      # TranslationValidationError names the rule at fault

Same rules, verifier and cost model as the TASO search (search.py); the input graph is
never changed. The e-graph has no rewrite history to replay, so blame works per value:
every extracted value belongs to an e-class, and the first one (in topological order)
whose numbers differ from the original value of that class names the rule that made
its e-node.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from ...ir.interpreter import Interpreter
from .cost import graph_seconds
from .egraph import EGraph, Limits, SaturationStats, saturate
from .extract import extract, to_graph
from .search import SearchReport, TranslationValidationError, mismatching_feeds


@dataclass
class EGraphReport(SearchReport):
    """SearchReport of the e-graph engine: `pops` = iterations, `seen` = e-nodes."""

    stats: SaturationStats | None = None
    method: str = ""
    extract_seconds: float = 0.0

    def __str__(self):
        head = super().__str__().rsplit(";", 1)[0]
        s = self.stats
        return (f"{head}; {s.iterations} iterations ({s.stop}), {s.enodes} e-nodes in "
                f"{s.eclasses} e-classes, {self.method} extraction {self.extract_seconds:.2f} s, "
                f"{self.seconds:.2f} s")


@dataclass
class Extraction:
    """The optimized graph and what validation needs to blame a rule."""

    original: object
    graph: object
    egraph: EGraph
    class_of_original: dict   # value name in `original` -> class id
    class_of: dict            # value name in `graph` -> class id
    made_by: dict             # node name in `graph` -> rule ("" for the input's own nodes)


def saturation_search(graph, rules, limits: Limits | None = None, extract_seconds: float = 5.0):
    """Equality saturation with verified `rules`, then ILP extraction by the cost model.

    Args:
        graph: the input ir.Graph (not modified).
        rules: verified Rules (see verify.checked).
        limits: saturation bounds (iterations, e-nodes, seconds, merge rounds).
        extract_seconds: time for the extraction solver (greedy fallback after it).
    Returns:
        (Extraction, EGraphReport); the graph is the input's copy when nothing cheaper was found.
    """
    t0 = time.time()
    eg = EGraph()
    ids = eg.add_graph(graph)
    roots = [ids[v.name] for v in graph.outputs]
    stats = saturate(eg, rules, limits or Limits())
    t1 = time.time()
    choice, method = extract(eg, roots, extract_seconds)
    new, made_by, class_of = to_graph(eg, choice, roots, graph)
    before, after = graph_seconds(graph), graph_seconds(new)
    if after >= before:
        new, made_by, after = graph.copy(), {n.name: "" for n in graph.nodes}, before
        class_of = dict(ids)
    fired = eg.rules_behind(choice, roots) if after < before else []
    report = EGraphReport(before, after, fired, stats.iterations, stats.enodes, time.time() - t0,
                          stats, method, time.time() - t1)
    return Extraction(graph, new, eg, ids, class_of, made_by), report


class _Recorder(Interpreter):
    """The interpreter, keeping every value it computes (name -> array)."""

    def run(self, feeds):
        self.values = dict(feeds)
        super().run(feeds)
        return self.values

    def run_node(self, node, args):
        outs = super().run_node(node, args)
        self.values.update((v.name, a) for v, a in zip(node.outputs, outs))
        return outs


def validate_extraction(best: Extraction, rtol: float = 1e-4, seeds=(0, 1)):
    """Interpret the extracted graph against the original on random inputs; on a mismatch
    raise TranslationValidationError naming the first node whose value differs from the
    original value of its e-class, and the rule(s) that made it."""
    from ..manager import outputs_differ

    feeds = mismatching_feeds(best.original, best.graph, rtol, seeds)
    if feeds is None:
        return
    eg = best.egraph
    want, got = _Recorder(best.original).run(feeds), _Recorder(best.graph).run(feeds)
    reference = {eg.find(c): name for name, c in best.class_of_original.items() if name in want}
    for node in best.graph.nodes:
        for v in node.outputs:
            cid = best.class_of.get(v.name)
            ref = reference.get(eg.find(cid)) if cid is not None else None
            if ref is not None and outputs_differ(want[ref], got[v.name], rtol):
                rules = ", ".join(sorted(_blamed(best, node))) or "none"
                raise TranslationValidationError(
                    f"translation validation failed (e-graph): node {node.name} ({node.op}) computes "
                    f"%{v.name} differently from the original %{ref}; rule(s) that made it: {rules}; "
                    f"the rule's implementation does not match what was proved")
    raise TranslationValidationError("translation validation failed (e-graph): outputs differ, "
                                     "no single value to blame")


def _blamed(best: Extraction, node) -> set:
    """The rules that made `node`, or else the nearest rule-made nodes it reads."""
    if best.made_by.get(node.name):
        return {best.made_by[node.name]}
    out = set()
    for v in node.inputs:
        if v.producer is not None:
            out |= _blamed(best, v.producer)
    return out
