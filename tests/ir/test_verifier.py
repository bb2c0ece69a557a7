"""The verifier catches each kind of ill-formed graph, and passes well-formed ones."""
from __future__ import annotations

import numpy as np
import pytest

from nnforge.errors import NnforgeError, ShapeError
from nnforge.ir import Graph, Node, TensorType, Value, interpret, parse_graph, verify

TEXT = """graph g(%x: float32[2,3]) {
  %k = const float32[3] [1.0, 2.0, 3.0]
  %a = Mul(%x, %k)
  %b = Relu(%a)
  %c = Softmax(%b) {axis=1}
  return %c
}"""


def good_graph() -> Graph:
    g = parse_graph(TEXT)
    verify(g)  # well formed to begin with, and it computes softmax(relu(x * k))
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    e = np.exp(np.maximum(x * [1, 2, 3], 0))
    np.testing.assert_allclose(interpret(g, {"x": x})[0], e / e.sum(1, keepdims=True), rtol=1e-6)
    return g


def node(g, op):
    return next(n for n in g.nodes if n.op == op)


def test_duplicate_definition():
    g = good_graph()
    node(g, "Relu").outputs[0].name = "a"
    with pytest.raises(ShapeError, match="%a is defined twice"):
        verify(g)


def test_use_before_definition():
    g = good_graph()
    g.nodes.reverse()
    with pytest.raises(ShapeError, match="before it is defined"):
        verify(g)


def test_cycle():
    g = good_graph()
    mul = node(g, "Mul")
    mul.inputs[0] = node(g, "Relu").outputs[0]  # Mul <- Relu <- Mul
    with pytest.raises(ShapeError, match="node mul .*before it is defined"):
        verify(g)


def test_wrong_output_type():
    g = good_graph()
    node(g, "Relu").outputs[0].type = TensorType("float32", (3, 2))
    with pytest.raises(ShapeError, match=r"typed float32\[3,2\], inference gives float32\[2,3\]"):
        verify(g)


def test_unknown_op():
    g = good_graph()
    node(g, "Relu").op = "Frobnicate"
    with pytest.raises(NnforgeError, match="unknown IR op 'Frobnicate'"):
        verify(g)


def test_bad_attributes():
    g = good_graph()
    node(g, "Softmax").attrs["axis"] = 5
    with pytest.raises(ShapeError, match="axis=5 out of range"):
        verify(g)
    node(g, "Softmax").attrs = {"axis": 1, "beta": 2.0}
    with pytest.raises(NnforgeError, match=r"unknown attribute\(s\) \['beta'\]"):
        verify(g)
    node(g, "Softmax").attrs = {"axis": "1"}
    with pytest.raises(ShapeError, match="not normalized"):
        verify(g)


def test_undefined_graph_output():
    g = good_graph()
    g.outputs = [Value("ghost", TensorType("float32", (2, 3)))]
    with pytest.raises(ShapeError, match="graph output %ghost is not defined"):
        verify(g)


def test_output_not_pointing_back():
    g = good_graph()
    relu = node(g, "Relu")
    relu.outputs[0].producer = Node("Relu", [], [], {}, "other")
    with pytest.raises(ShapeError, match="does not point back"):
        verify(g)
