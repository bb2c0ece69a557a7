"""Graph editing: replace_all_uses, remove_dead, toposort and copy, checked by structure
and by the interpreter's numbers."""
from __future__ import annotations

import random

import numpy as np
import pytest

from nnforge.errors import ShapeError
from nnforge.ir import TensorType, Value, interpret, parse_graph, print_graph, verify

TEXT = """graph g(%x: float32[2,3]) {
  %k = const float32[3] [1.0, -2.0, 3.0]
  %a = Mul(%x, %k)
  %b = Relu(%a)
  %unused = Exp(%a)
  %c = Add(%b, %x)
  %d = Neg(%c)
  return %d, %b
}"""
X = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)


def expected():
    b = np.maximum(X * [1, -2, 3], 0).astype(np.float32)
    return [-(b + X), b]


def run(g):
    verify(g)
    return interpret(g, {"x": X})


def test_replace_all_uses_rewires_nodes_and_outputs():
    g = parse_graph(TEXT)
    a = g.nodes[0].outputs[0]
    b = g.nodes[1].outputs[0]
    g.replace_all_uses(b, a)  # drop the Relu: b -> a everywhere
    assert [v.name for v in g.nodes[3].inputs] == ["a", "x"]
    assert [v.name for v in g.outputs] == ["d", "a"]
    a_val = (X * [1, -2, 3]).astype(np.float32)
    for got, want in zip(run(g), [-(a_val + X), a_val]):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.raises(ShapeError, match="cannot replace"):
        g.replace_all_uses(a, Value("y", TensorType("int32", (2, 3))))


def test_remove_dead_keeps_only_what_reaches_outputs():
    g = parse_graph(TEXT)
    g.remove_dead()
    assert [n.op for n in g.nodes] == ["Mul", "Relu", "Add", "Neg"]
    for got, want in zip(run(g), expected()):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_toposort_restores_a_shuffled_graph():
    g = parse_graph(TEXT)
    order = [n.name for n in g.nodes]
    random.Random(0).shuffle(g.nodes)
    g.toposort()
    verify(g)
    position = {n.name: i for i, n in enumerate(g.nodes)}
    for n in g.nodes:
        for v in n.inputs:
            if v.producer is not None:
                assert position[v.producer.name] < position[n.name]
    assert sorted(position) == sorted(order)
    for got, want in zip(run(g), expected()):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_toposort_reports_a_cycle():
    g = parse_graph(TEXT)
    g.nodes[0].inputs[0] = g.nodes[3].outputs[0]  # Mul <- Add <- Relu <- Mul
    with pytest.raises(ShapeError, match="cycle"):
        g.toposort()


def test_copy_is_independent():
    g = parse_graph(TEXT)
    before = print_graph(g, max_const_elems=None)
    twin = g.copy()
    assert print_graph(twin, max_const_elems=None) == before
    twin.nodes[1].op = "Neg"
    twin.nodes[1].attrs["note"] = 1
    twin.replace_all_uses(twin.nodes[0].outputs[0], twin.inputs[0])
    twin.remove_dead()
    assert print_graph(g, max_const_elems=None) == before
    assert all(v.producer in g.nodes for n in g.nodes for v in n.outputs)
    for got, want in zip(run(g), expected()):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    # a name made in the copy does not leak into the original
    assert twin.unique_name("fresh") == "fresh" and g.unique_name("fresh") == "fresh"
