"""The default `simplify` pass: batchnorm folded into convs, numbers unchanged, pure."""
import numpy as np

from nnforge.driver import import_graph
from nnforge.ir import interpret, verify
from nnforge.models.builders import resnet
from nnforge.passes import PassManager


def test_simplify_folds_batchnorm_and_keeps_numbers():
    graph = import_graph(resnet(depth=18, num_classes=10, image=32, width=8, seed=3))
    before = graph.op_histogram()
    out = PassManager(["simplify"], verify=True, validate=True).run(graph)
    assert before["BatchNormalization"] == 20 and "BatchNormalization" not in out.op_histogram()
    assert graph.op_histogram() == before  # the input graph is untouched
    assert [v.name for v in out.outputs] == [v.name for v in graph.outputs]
    x = {"input": np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)}
    np.testing.assert_allclose(interpret(out, x)[0], interpret(graph, x)[0], rtol=1e-4, atol=1e-5)


def test_simplify_without_matches_returns_a_copy():
    from nnforge.ir import Graph, TensorType

    g = Graph("g")
    x = g.add_input("x", TensorType("float32", (2, 3)))
    g.set_outputs(g.add_node("Relu", [x]))
    out = PassManager(["simplify"]).run(g)
    verify(out)
    assert out is not g and out.op_histogram() == {"Relu": 1}


def test_simplify_fuses_every_conv_relu_and_keeps_numbers():
    graph = import_graph(resnet(depth=18, num_classes=10, image=32, width=8, seed=3))
    out = PassManager(["simplify"], verify=True, validate=True).run(graph)
    convs = [n for n in out.nodes if n.op == "Conv"]
    fused = [n for n in convs if n.attrs["activation"] == "Relu"]
    # resnet-18: the stem and both convs of each of the 8 blocks (the second with the block's
    # Add as its residual input); no Add or Relu is left
    residual = [n for n in fused if len(n.inputs) == 4]
    assert len(fused) == 17 and len(residual) == 8 and graph.op_histogram()["Relu"] == 17
    assert "Relu" not in out.op_histogram() and "Add" not in out.op_histogram()
    x = {"input": np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)}
    np.testing.assert_allclose(interpret(out, x)[0], interpret(graph, x)[0], rtol=1e-4, atol=1e-5)
