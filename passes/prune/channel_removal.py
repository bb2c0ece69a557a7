"""Physically remove the channels a ChannelPlan drops: a new graph whose convs, BatchNorms,
per-channel constants and consumer weights are sliced to the kept channels.

The graph is rebuilt node by node with `Graph.add_node`, so every shape is inferred again by
the registry: a slicing mistake surfaces as a ShapeError naming the node, never as a
silently different graph.
"""
from __future__ import annotations

import numpy as np

from ...ir import Graph
from .channels import ChannelPlan, is_depthwise


def _take(array: np.ndarray, keep, axis: int) -> np.ndarray:
    return np.ascontiguousarray(np.take(array, keep, axis=axis))


def _sliced_inputs(node, plan: ChannelPlan):
    """[(input index, kept indices, axis)] of the node's constant inputs to slice, and new attrs."""
    kin = plan.kept_channels(node.inputs[0].name)
    kout = plan.kept_channels(node.outputs[0].name)
    attrs = dict(node.attrs)
    cuts = []
    if node.op == "Conv" and is_depthwise(node):
        if kin is not None:
            cuts = [(1, kin, 0), (2, kin, 0)]
            attrs["group"] = len(kin)
    elif node.op == "Conv":
        cuts = [(1, kout, 0), (1, kin, 1), (2, kout, 0)]
    elif node.op == "BatchNormalization":
        cuts = [(i, kin, 0) for i in range(1, 5)]
    elif node.op == "Gemm":
        cuts = [(1, kin, 1 if node.attrs["transB"] else 0)]
    elif node.op == "MatMul":
        cuts = [(1, kin, 0)]
    elif node.op == "Reshape" and kout is not None:
        attrs["shape"] = (node.attrs["shape"][0], len(kout))
    elif kout is not None:  # channel-wise ops and residual arithmetic: per-channel constants
        channels = node.outputs[0].type.shape[1]
        cuts = [(i, kout, v.type.rank - 3) for i, v in enumerate(node.inputs)
                if v.is_constant and v.type.rank >= 3 and v.type.shape[v.type.rank - 3] == channels > 1]
    return [(i, k, axis) for i, k, axis in cuts if k is not None and i < len(node.inputs)], attrs


def remove_channels(graph, plan: ChannelPlan):
    """A new graph computing `graph` without the channels `plan` drops.

    Args:
        graph: the ir.Graph the plan was made for.
        plan: from `plan_channels`.
    Returns:
        the new ir.Graph (same value names; fewer channels).
    """
    g = Graph(graph.name)
    values = {v.name: g.add_input(v.name, v.type) for v in graph.inputs}
    constants: dict = {}

    def constant(v):
        if v.name not in constants:
            constants[v.name] = g.constant(v.data, v.name)
        return constants[v.name]

    for node in graph.nodes:
        cuts, attrs = _sliced_inputs(node, plan)
        inputs = [constant(v) if v.is_constant else values[v.name] for v in node.inputs]
        sliced: dict = {}
        for i, keep, axis in cuts:
            sliced[i] = _take(sliced.get(i, node.inputs[i].data), keep, axis)
        for i, array in sliced.items():
            inputs[i] = g.constant(array, node.inputs[i].name)
        outs = g.add_node(node.op, inputs, attrs, name=node.name, output_names=[v.name for v in node.outputs])
        values.update({old.name: new for old, new in zip(node.outputs, outs)})
    g.set_outputs([constant(v) if v.is_constant else values[v.name] for v in graph.outputs])
    return g
