"""Pruning: unstructured magnitude, block and channel pruning (spec.py lists the spec forms).

    from nnforge.passes.prune import prune
    pruned = prune(graph, "block:16x1:0.9")       # same shapes, 90% of 16x1 weight blocks zero
    pruned = prune(graph, "channel:l1:0.5")       # half the channels physically removed

In the compile pipeline it is the pass "prune:SPEC", run before the default passes (BatchNorm
folding would erase the gammas "slimming" ranks by):

    nnforge compile model.onnx -o out --prune block:16x1:0.9
    nnforge.compile(model, passes=["prune:block:16x1:0.9", *nnforge.passes.DEFAULT_PIPELINE])

Zeroed weights change the kernels only through codegen/sparse.py, which stores sparse
enough constant weights block-sparse when its cost model says that is faster.
"""
from __future__ import annotations

from ..manager import Pass, register_pass_factory
from .channel_removal import remove_channels
from .channels import plan_channels
from .spec import PruneSpec, parse_prune_spec
from .weights import prune_weights

__all__ = ["prune", "prune_pass", "PruneSpec", "parse_prune_spec", "plan_channels", "remove_channels"]


def prune(graph, spec):
    """A pruned copy of `graph`.

    Args:
        graph: an ir.Graph (not modified).
        spec: a PruneSpec or its string form ("magnitude:0.8", "block:4x4:0.9",
            "channel:l1:0.5", "channel:slimming:0.5").
    Returns:
        the new ir.Graph.
    """
    spec = parse_prune_spec(spec) if isinstance(spec, str) else spec
    if spec.method == "channel":
        return remove_channels(graph, plan_channels(graph, spec.criterion, spec.ratio))
    return prune_weights(graph, spec.block, spec.ratio)[0]


@register_pass_factory("prune")
def prune_pass(argument: str) -> Pass:
    """The pass "prune:SPEC"; NnforgeError listing the accepted forms for a bad SPEC."""
    spec = parse_prune_spec(argument)
    return Pass(f"prune:{spec}", lambda graph: prune(graph, spec), f"prune weights ({spec})")
