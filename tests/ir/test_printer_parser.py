"""The text form: print -> parse -> print is the identity and the numbers do not change."""
from __future__ import annotations

import numpy as np
import pytest

from nnforge.errors import ModelError, NnforgeError, ShapeError
from nnforge.ir import Graph, TensorType, interpret, parse_graph, print_graph

rng = np.random.default_rng(1)


def small_graph() -> Graph:
    """Conv (with a fused Relu) + Split (two outputs) + inline, elided, int, bool and oddly named values."""
    g = Graph("net-1")
    x = g.add_input("x", TensorType("float32", (1, 3, 6, 6)))
    w = g.constant(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = g.constant(np.array([0.5, -1.0, 1e-8, np.inf], np.float32), "b")
    y, = g.add_node("Conv", [x, w, b], {"pads": [1, 1, 1, 1], "activation": "Relu"},
                    output_names=["/conv/out:0"])
    left, right = g.add_node("Split", [y], {"axis": 1, "split": [1, 3]})
    mask = g.constant(np.array([True, False, True, True, False, True]), "mask")
    picked, = g.add_node("Where", [mask, left, g.constant(np.float16(0.1).astype(np.float32))])
    idx = g.constant(np.array([[2], [0]], np.int64), "idx")
    gathered, = g.add_node("Gather", [right, idx], {"axis": 1})
    resized, = g.add_node("Resize", [picked], {"mode": "linear", "scales": [1, 1, 0.5, 0.5],
                                               "sizes": [1, 1, 3, 3]})
    g.set_outputs([resized, gathered, b])
    return g


def test_round_trip_is_identity_and_numbers_match():
    g = small_graph()
    text = print_graph(g, max_const_elems=None)
    again = parse_graph(text)
    assert print_graph(again, max_const_elems=None) == text
    feeds = {"x": rng.standard_normal((1, 3, 6, 6)).astype(np.float32)}
    for want, got in zip(interpret(g, feeds), interpret(again, feeds)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_text_shape():
    text = print_graph(small_graph())
    lines = text.splitlines()
    assert lines[0] == 'graph "net-1"(%x: float32[1,3,6,6]) {'
    assert "  %w = const float32[4,3,3,3] <elided>" in lines
    assert "  %b = const float32[4] [0.5, -1.0, 1e-08, inf]" in lines
    assert "  %mask = const bool[6] [true, false, true, true, false, true]" in lines
    assert ('  %"/conv/out:0" = Conv(%x, %w, %b) '
            '{strides=[1,1], pads=[1,1,1,1], dilations=[1,1], group=1, activation="Relu"}') in lines
    assert any(line.startswith('  %split_out0, %split_out1 = Split(%"/conv/out:0")')
               for line in lines)
    assert 'mode="linear"' in text and "scales=[1.0,1.0,0.5,0.5]" in text
    assert lines[-2:] == ["  return %resize, %gather, %b", "}"]


def test_written_types_are_checked():
    text = print_graph(small_graph(), max_const_elems=None, types=True)
    assert '%resize: float32[1,1,3,3] = Resize' in text
    parse_graph(text)
    with pytest.raises(ShapeError, match=r"line \d+: %resize is written as float32\[1,1,2,2\]"):
        parse_graph(text.replace("%resize: float32[1,1,3,3]", "%resize: float32[1,1,2,2]"))


def test_float_constants_round_trip_exactly():
    values = np.concatenate([rng.standard_normal(4000) * 10.0 ** rng.integers(-40, 38, 4000),
                             [np.finfo(np.float32).tiny / 3, -0.0, np.nan]]).astype(np.float32)
    for dtype in (np.float32, np.float16, np.float64):
        with np.errstate(over="ignore"):  # huge values become inf in float16: still exact
            typed = values.astype(dtype)
        g = Graph()
        x = g.add_input("x", TensorType(dtype, (values.size,)))
        y, = g.add_node("Add", [x, g.constant(typed, "c")])
        g.set_outputs([y])
        parsed = parse_graph(print_graph(g, max_const_elems=10 ** 6)).constants[0].data
        assert parsed.tobytes() == typed.tobytes()


def test_elided_constant_needs_constants():
    g = small_graph()
    text = print_graph(g)
    with pytest.raises(ModelError, match=r"line 2: constant %w is <elided>"):
        parse_graph(text)
    w = g.constants[0].data
    again = parse_graph(text, constants={"w": w})
    assert np.array_equal(again.constants[0].data, w)
    with pytest.raises(ShapeError, match="written as float32"):
        parse_graph(text, constants={"w": w[:2]})


@pytest.mark.parametrize("text, message", [
    ("graph g(%x: float32[2]) {\n  %y = Relu(%x\n  return %y\n}", r"line 2: expected ',' or '\)'"),
    ("graph g(%x: float32[2]) {\n  %y = Relu(%z)\n  return %y\n}", r"line 2: %z is used before"),
    ("graph g(%x: float32[2]) {\n  %y = Relu(%x)\n  return %q\n}", r"line 3: returned value %q"),
    ("graph g(%x: float32[2]) {\n  %x = Relu(%x)\n  return %x\n}", r"line 2: %x is defined twice"),
    ("graph g(%x: float32[2]) {\n  %y = Relu(%x) $\n  return %y\n}", r"line 2: unexpected char"),
    ("graph g(%x: float32[2]) {\n  %y = Relu(%x)\n", "must end with a return"),
    ("graph g(%x: float32[2]) {\n  %y = Softmax(%x)\n  return %y\n}",
     r"line 2: .*missing required attribute axis"),
    ("graph g(%x: float32[2]) {\n  %y = Nope(%x)\n  return %y\n}", r"line 2: unknown IR op"),
    ("graph g(%x: float32[2]) {\n  %c = const int32[2] [1]\n  return %c\n}", r"lists 1 values"),
])
def test_errors_name_the_line(text, message):
    with pytest.raises(NnforgeError, match=message):
        parse_graph(text)


def test_hand_written_graph_runs():
    g = parse_graph("""
        # comments and blank lines are fine
        graph tiny(%x: float32[2,3]) {
          %k = const float32[3] [1.0, 2.0, 3.0]
          %y = Mul(%x, %k)
          %s = ReduceSum(%y) {axes=[1], keepdims=0}
          return %s
        }""")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(interpret(g, {"x": x})[0], (x * [1, 2, 3]).sum(1))
