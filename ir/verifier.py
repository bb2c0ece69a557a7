"""The IR verifier: single definition, defined-before-use (acyclic), known ops,
attributes within schema, and every output type equal to what the registry infers."""
from __future__ import annotations

from ..errors import ShapeError
from .registry import get_op


def verify(graph) -> None:
    """Raise ShapeError naming the first problem found in `graph`.

    Args:
        graph: an ir.Graph.
    """
    defined: dict[str, object] = {}

    def define(v, where):
        if v.name in defined and defined[v.name] is not v:
            raise ShapeError(f"value %{v.name} is defined twice (second time by {where})")
        defined[v.name] = v

    for v in graph.inputs:
        if v.is_constant or v.producer is not None:
            raise ShapeError(f"graph input %{v.name} must be a plain run-time value")
        define(v, "graph input")
    for node in graph.nodes:
        opdef = get_op(node.op)
        for i, v in enumerate(node.inputs):
            if v.is_constant:
                if tuple(v.data.shape) != v.type.shape or v.data.dtype.name != v.type.dtype:
                    raise ShapeError(f"constant %{v.name} data {v.data.dtype}{list(v.data.shape)} "
                                     f"does not match its type {v.type}")
                define(v, "constant")
            elif defined.get(v.name) is not v:
                raise ShapeError(f"node {node.name} ({node.op}) input {i} uses %{v.name} before it is "
                                 f"defined (cycle, unsorted nodes, or a value from another graph)")
        if opdef.check_attrs(node.attrs, node.name) != node.attrs:
            raise ShapeError(f"node {node.name} ({node.op}) attributes are not normalized: {node.attrs}")
        inferred = opdef.infer_types([v.type for v in node.inputs], node.attrs, node.name)
        if len(inferred) != len(node.outputs):
            raise ShapeError(f"node {node.name} ({node.op}) has {len(node.outputs)} outputs, "
                             f"the op defines {len(inferred)}")
        for v, t in zip(node.outputs, inferred):
            if v.type != t:
                raise ShapeError(f"node {node.name} ({node.op}) output %{v.name} is typed {v.type}, "
                                 f"inference gives {t}")
            if v.producer is not node:
                raise ShapeError(f"output %{v.name} of node {node.name} does not point back to it")
            define(v, f"node {node.name}")
    for v in graph.outputs:
        if not v.is_constant and defined.get(v.name) is not v:
            raise ShapeError(f"graph output %{v.name} is not defined in the graph")
