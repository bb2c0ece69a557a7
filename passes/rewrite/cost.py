"""The cost model the search minimizes: registry costs through a simple roofline.

Each node costs `max(flops / PEAK_FLOPS, bytes / BANDWIDTH) + NODE_OVERHEAD` seconds,
with FLOPs and bytes from the op registry. A node whose inputs are all constants
is folded at compile time and costs nothing.
"""
from __future__ import annotations

from ...ir import get_op

PEAK_FLOPS = 100e9     # FLOP/s of one CPU socket running a good kernel
BANDWIDTH = 20e9       # bytes/s from memory
NODE_OVERHEAD = 2e-6   # s per kernel call (dispatch, cache warm-up): why fusing and merging pay


def op_seconds(op: str, in_types, out_types, attrs) -> float:
    """Roofline time of one `op` call on these types (not constant-folded)."""
    c = get_op(op).cost(list(in_types), list(out_types), attrs)
    return max(c.flops / PEAK_FLOPS, (c.bytes_read + c.bytes_written) / BANDWIDTH) + NODE_OVERHEAD


def node_seconds(node) -> float:
    """Roofline time of one node (0 when it will be constant-folded)."""
    if all(v.is_constant for v in node.inputs):
        return 0.0
    return op_seconds(node.op, [v.type for v in node.inputs], [v.type for v in node.outputs], node.attrs)


def graph_seconds(graph) -> float:
    """Estimated run time of `graph`: the sum of its nodes' roofline times."""
    return sum(node_seconds(n) for n in graph.nodes)
