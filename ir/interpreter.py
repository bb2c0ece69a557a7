"""The numpy reference interpreter: the oracle every pass and kernel is tested against.

Subclass `Interpreter` and define `op_<OpName>(self, node, *arrays)` to override
one op (calibration observers and cost estimators do this), or override
`run_node` to watch every node.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError, NnforgeError
from .registry import get_op
from .types import TensorType


class Interpreter:
    """Runs a Graph node by node with the registry's numpy reference implementations."""

    def __init__(self, graph):
        self.graph = graph

    def run(self, feeds: dict) -> list:
        """Run the graph.

        Args:
            feeds: input name -> numpy array (types must match the graph inputs).
        Returns:
            list of numpy arrays in graph output order.
        """
        env = {}
        check_feeds(self.graph.inputs, feeds)
        for v in self.graph.inputs:
            env[v.name] = np.asarray(feeds[v.name])
        for node in self.graph.nodes:
            args = [v.data if v.is_constant else env[v.name] for v in node.inputs]
            outs = self.run_node(node, args)
            for v, a in zip(node.outputs, outs):
                env[v.name] = a
        return [v.data if v.is_constant else env[v.name] for v in self.graph.outputs]

    def run_node(self, node, args) -> list:
        """Outputs of one node as numpy arrays with exactly the inferred types."""
        override = getattr(self, f"op_{node.op}", None)
        try:
            outs = override(node, *args) if override else get_op(node.op).run(args, node.attrs)
            outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        except NnforgeError:
            raise
        except Exception as e:
            raise NnforgeError(f"reference implementation of node {node.name} ({node.op}) failed: "
                               f"{type(e).__name__}: {e}") from e
        return [np.asarray(a, dtype=v.type.dtype).reshape(v.type.shape) for a, v in zip(outs, node.outputs)]


def check_feeds(inputs, feeds: dict):
    """Raise InputError unless `feeds` has exactly the graph inputs with matching shape and dtype."""
    names = [v.name for v in inputs]
    missing = [n for n in names if n not in feeds]
    extra = [n for n in feeds if n not in names]
    if missing or extra:
        raise InputError(f"feeds do not match the model inputs {names}: "
                         f"missing {missing}, unexpected {extra}")
    for v in inputs:
        got = TensorType.of(feeds[v.name])
        if got != v.type:
            raise InputError(f"input {v.name!r}: expected {v.type}, got {got}")


def interpret(graph, feeds: dict) -> list:
    """Run `graph` on `feeds` in numpy; returns outputs in graph output order."""
    return Interpreter(graph).run(feeds)
