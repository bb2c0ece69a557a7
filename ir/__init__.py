"""nnforge's graph IR: Graph, Node, Value, TensorType, the op registry, printer/parser,
verifier and the numpy reference interpreter."""
from .graph import Graph, Node, Value
from .interpreter import Interpreter, interpret
from .parser import parse_graph
from .printer import print_graph
from .registry import OPS, Cost, get_op, register
from .types import TensorType
from .verifier import verify

__all__ = ["Graph", "Node", "Value", "TensorType", "OPS", "Cost", "get_op", "register",
           "Interpreter", "interpret", "verify", "print_graph", "parse_graph", "graph_cost"]


def graph_cost(graph) -> Cost:
    """Sum of the registry costs of every node."""
    total = Cost(0, 0, 0)
    for node in graph.nodes:
        total = total + get_op(node.op).cost([v.type for v in node.inputs],
                                             [v.type for v in node.outputs], node.attrs)
    return total
