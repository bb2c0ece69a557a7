"""TASO-style verified graph rewrites: rules as data, their verifier, a cost model, a search.

    from nnforge.passes.rewrite import optimize_graph
    new_graph, report = optimize_graph(graph)              # all rules
    print(report)   # cost before/after, rules fired, search time

Every rule is proved with z3 and checked numerically before it may run (verify.py);
an unproved rule raises UnsoundRuleError. After the search the result is validated
against the input with the interpreter (search.validate).

Two engines share the rules, verifier and cost model: `engine="taso"` (search.py, TASO's
backtracking search) and `engine="egraph"` (saturation.py, Tensat-style equality
saturation with ILP extraction). relax_pass.py runs either as a TVM Relax module pass.
"""
from __future__ import annotations

from ...errors import NnforgeError
from ..manager import register_pass
from .egraph import Limits
from .engine import Match, Rule, Sym, apply, find_matches, rewrite_to_fixpoint
from .rules import RULES, get_rules
from .saturation import EGraphReport, saturation_search, validate_extraction
from .search import SearchReport, TranslationValidationError, search, validate
from .verify import UnsoundRuleError, checked, verdict_of, verify_rule

__all__ = ["Rule", "Sym", "Match", "RULES", "get_rules", "apply", "find_matches",
           "rewrite_to_fixpoint", "search", "validate", "checked", "verify_rule", "verdict_of",
           "optimize_graph", "optimize_model", "SearchReport", "UnsoundRuleError",
           "TranslationValidationError", "ENGINES", "Limits", "EGraphReport", "saturation_search",
           "validate_extraction"]


ENGINES = ("taso", "egraph")


def optimize_graph(graph, rules=None, disable=(), alpha: float = 1.05, max_pops: int = 200,
                   time_limit: float = 20.0, engine: str = "taso", limits=None):
    """Search for a cheaper equivalent graph with verified rules, then validate it.

    Args:
        graph: an ir.Graph (not modified).
        rules: rule names or Rule objects (default: every rule in RULES).
        disable: rule names to leave out.
        alpha, max_pops, time_limit: search parameters (see search.search); the e-graph
            engine spends half of time_limit saturating and 40% extracting.
        engine: "taso" (backtracking search) or "egraph" (equality saturation).
        limits: egraph.Limits overriding the e-graph bounds derived from time_limit.
    Returns:
        (optimized ir.Graph, SearchReport).
    Raises:
        UnsoundRuleError: a requested rule is not proved/tested.
        TranslationValidationError: the result differs from the input (names the rule).
    """
    if rules is None or all(isinstance(r, str) for r in rules):
        rules = get_rules(rules, disable)
    else:
        rules = [r for r in rules if r.name not in set(disable)]
    if engine not in ENGINES:
        raise NnforgeError(f"unknown rewrite engine {engine!r}; expected one of {list(ENGINES)}")
    if engine == "egraph":
        best, report = saturation_search(graph, checked(rules), limits or Limits(seconds=time_limit / 2),
                                         0.4 * time_limit)
        validate_extraction(best)
    else:
        best, report = search(graph, checked(rules), alpha, max_pops, time_limit)
        validate(best)
    return _keep_output_names(graph, best.graph), report


def _keep_output_names(original, graph):
    """Give the outputs their original names again (rewrites make fresh values); an output
    that became an input, a constant or another output gets a no-op Reshape."""
    taken = {v.name for v in graph.inputs} | {v.name for n in graph.nodes for v in n.outputs}
    for i, (want, v) in enumerate(zip(original.outputs, graph.outputs)):
        if v.name == want.name:
            continue
        shared = v.producer is None or sum(o is v for o in graph.outputs) > 1
        if shared:
            v = graph.add_node("Reshape", [v], {"shape": v.type.shape}, name=want.name)[0]
            graph.outputs[i] = v
        if want.name not in taken or v.name == want.name:
            v.name = want.name  # a fresh value of this rewrite: renaming it rewires nothing
    return graph


def optimize_model(model, rules=None, disable=(), **search_args):
    """ONNX in, ONNX out: import, search with verified rules, validate, export (opset 17).

    Args:
        model: onnx.ModelProto, path or bytes.
        rules, disable: as in optimize_graph.
        search_args: engine, alpha, max_pops, time_limit, limits (see optimize_graph).
    Returns:
        (onnx.ModelProto, SearchReport).
    """
    from ...frontend.onnx import import_model
    from ...frontend.onnx_export import export_model

    graph, report = optimize_graph(import_model(model), rules, disable, **search_args)
    return export_model(graph), report


@register_pass("taso-rewrite")
def taso_rewrite(graph):
    """Cost-guided search with every verified rewrite rule."""
    return optimize_graph(graph)[0]


# Rules that only ever remove work (folding into convs, constants, no-op ops): safe to run
# greedily to a fixpoint on every compile, unlike the cost-guided search.
SIMPLIFY_RULES = (
    "fold-constants", "fold-conv-batchnorm", "fold-conv-bias-batchnorm", "fold-conv-add",
    "fold-conv-bias-add", "fold-conv-mul", "fold-conv-bias-mul", "fold-pad-into-conv",
    "add-zero", "add-zero-left", "sub-zero", "mul-one", "mul-one-left", "div-one", "reshape-noop",
    "reshape-reshape", "transpose-identity", "transpose-transpose", "expand-noop", "tile-ones",
    "pad-zero", "slice-full", "concat-single", "split-single", "relu-relu", "neg-neg",
    *(f"fuse-conv{b}-residual-{op}{side}" for b in ("-bias", "") for op in ("add", "sum") for side in ("", "-left")),
    "fuse-conv-relu",  # last: the folds above see the plain conv (they do not apply past a relu)
)


@register_pass("simplify")
def simplify(graph):
    """Greedy fixpoint of the verified rules that only remove work (batchnorm/bias/scale folded
    into convs, constant folding, no-op removal, relu fused into the conv before it)."""
    new, fired = rewrite_to_fixpoint(graph, checked(get_rules(SIMPLIFY_RULES)))
    return _keep_output_names(graph, new) if fired else graph.copy()
