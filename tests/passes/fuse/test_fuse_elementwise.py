"""The fuse-elementwise pass: which nodes it fuses, and the numbers before/after
(interpreter, and the compiled module)."""
import numpy as np

from nnforge.ir import Graph, TensorType, interpret, parse_graph, print_graph
from nnforge.passes import PassManager


def _chain_graph():
    """x, y -> add -> relu -> clip -> mul(x) -> sub(sigmoid(x)); add is also an output."""
    g = Graph("g")
    x = g.add_input("x", TensorType("float32", (2, 3, 5)))
    y = g.add_input("y", TensorType("float32", (3, 5)))
    a, = g.add_node("Add", [x, y])
    r, = g.add_node("Relu", [a])
    c, = g.add_node("Clip", [r], {"min": 0.0, "max": 6.0})
    m, = g.add_node("Mul", [c, x])
    s, = g.add_node("Sigmoid", [x])
    o, = g.add_node("Sub", [m, s], name="out")
    g.set_outputs([o, a])
    return g


def _feeds(graph, seed=0):
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(v.type.shape).astype(v.type.dtype) for v in graph.inputs}


def test_fuses_the_tree_and_keeps_numbers():
    g = _chain_graph()
    out = PassManager(["fuse-elementwise"], verify=True, validate=True).run(g)
    # the add is a graph output: it stays; the rest (relu, clip, mul, sigmoid, sub) is one node
    assert out.op_histogram() == {"Add": 1, "FusedElementwise": 1}
    assert g.op_histogram()["Relu"] == 1  # input untouched
    fused = out.nodes[-1]
    assert fused.attrs["expr"] == "Sub(Mul(Clip{min=0.0,max=6.0}(Relu($0)),$1),Sigmoid($1))"
    assert [v.name for v in out.outputs] == ["out", "add"]
    feeds = _feeds(g)
    for a, b in zip(interpret(out, feeds), interpret(g, feeds)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # the text form parses back to the same graph
    assert print_graph(parse_graph(print_graph(out))) == print_graph(out)


def test_shared_and_broadcast_intermediates_are_not_fused():
    g = Graph("g")
    x = g.add_input("x", TensorType("float32", (4, 6)))
    b = g.add_input("b", TensorType("float32", (6,)))
    nb, = g.add_node("Neg", [b])  # smaller than the output: would be recomputed per element
    a, = g.add_node("Add", [x, nb])
    e, = g.add_node("Exp", [a])  # two users: must be materialized
    g.set_outputs([g.add_node("Mul", [e, e])[0], g.add_node("Tanh", [e])[0]])
    out = PassManager(["fuse-elementwise"], verify=True, validate=True).run(g)
    assert out.op_histogram() == {"Neg": 1, "FusedElementwise": 1, "Mul": 1, "Tanh": 1}
    assert out.nodes[1].attrs["expr"] == "Exp(Add($0,$1))"


def test_compiled_fused_model_matches_interpreter_and_launches_fewer_kernels():
    import nnforge

    g = _chain_graph()
    fused = PassManager(["fuse-elementwise"]).run(g)
    cm = nnforge.compile(fused, cache=False)
    feeds = _feeds(g, 1)
    for got, want in zip(cm.run(feeds), interpret(g, feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert len(fused.nodes) == 2 < len(g.nodes) == 6


def test_an_existing_fused_node_is_spliced_into_a_larger_group():
    g = Graph("g")
    x = g.add_input("x", TensorType("float32", (3, 4)))
    y = g.add_input("y", TensorType("float32", (3, 4)))
    f, = g.add_node("FusedElementwise", [y, x], {"expr": "Sub($0,Exp($1))"})
    g.set_outputs(g.add_node("Tanh", [g.add_node("Mul", [x, f])[0]]))
    out = PassManager(["fuse-elementwise"], verify=True, validate=True).run(g)
    assert out.op_histogram() == {"FusedElementwise": 1}
    assert out.nodes[0].attrs["expr"] == "Tanh(Mul($0,Sub($1,Exp($0))))"
    feeds = _feeds(g, 2)
    np.testing.assert_allclose(interpret(out, feeds)[0], interpret(g, feeds)[0], rtol=1e-6)


def test_matmul_bias_add_is_left_for_the_quantizer():
    """Add(MatMul, constant bias) stays its own node (quantize folds it into QMatMul); the chain after it fuses."""
    rng = np.random.default_rng(0)
    g = Graph("g")
    x = g.add_input("x", TensorType("float32", (1, 4, 8)))
    w = g.constant(rng.standard_normal((8, 8)).astype(np.float32), "w")
    b = g.constant(rng.standard_normal(8).astype(np.float32), "b")
    (m,) = g.add_node("MatMul", [x, w])
    (a,) = g.add_node("Add", [m, b])
    (t,) = g.add_node("Tanh", [a])
    (o,) = g.add_node("Mul", [t, a])
    g.set_outputs([o])
    out = PassManager(["fuse-elementwise"], verify=True, validate=True).run(g)
    assert out.op_histogram() == {"MatMul": 1, "Add": 1, "FusedElementwise": 1}
