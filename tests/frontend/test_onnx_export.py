"""export_model: import -> export (opset 17) -> checker passes and ONNX Runtime computes what
the interpreter computes on the imported graph."""
import numpy as np
import onnx
import pytest
from onnx import helper

from nnforge.frontend import export_model, import_model
from nnforge.ir import interpret
from tests.frontend.onnx_models import C, model, one_node, oracle

rng = np.random.default_rng(2)
X = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)


def _ints(*v):
    return np.array(v, np.int64)


def _network():
    """A small network touching every IR op whose attributes export turns into inputs."""
    node = helper.make_node
    nodes = [
        node("Conv", ["x", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
        node("Clip", ["conv", "lo", "hi"], ["clip"]),
        node("MaxPool", ["clip"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
        node("Pad", ["pool", "pads", "pad_value"], ["pad"], mode="constant"),
        node("Slice", ["pad", "starts", "ends", "axes", "steps"], ["slice"]),
        node("Split", ["slice", "split"], ["s0", "s1"], axis=1),
        node("ReduceSum", ["s0", "sum_axes"], ["rsum"], keepdims=1),
        node("ReduceMean", ["s1"], ["rmean"], axes=[2, 3], keepdims=1),
        node("Expand", ["rmean", "expand_shape"], ["expand"]),
        node("Tile", ["rsum", "repeats"], ["tile"]),
        node("Add", ["expand", "tile"], ["sum"]),
        node("Resize", ["sum", "", "scales"], ["resize"], mode="linear"),
        node("Flatten", ["resize"], ["flat"], axis=1),
        node("Softmax", ["flat"], ["y"], axis=1),
        node("Cast", ["y"], ["y16"], to=onnx.TensorProto.FLOAT16),
    ]
    consts = {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
              "b": rng.standard_normal(4).astype(np.float32),
              "lo": np.float32(-1.0), "hi": np.float32(1.5), "pads": _ints(0, 0, 1, 0, 0, 0, 0, 2),
              "pad_value": np.float32(0.25), "starts": _ints(-1, 0), "ends": _ints(-1000, 4),
              "axes": _ints(2, 1), "steps": _ints(-1, 1), "split": _ints(1, 3), "sum_axes": _ints(1),
              "expand_shape": _ints(1, 3, 1, 1), "repeats": _ints(1, 3, 1, 1),
              "scales": np.array([1, 1, 1.5, 2], np.float32)}
    return model(nodes, {"x": X}, ["y", "y16", "pool"], consts, opset=13)


def _round_trip(proto, feeds):
    graph = import_model(proto)
    exported = export_model(graph)
    onnx.checker.check_model(exported, full_check=True)
    assert exported.opset_import[0].version == 17 and exported.ir_version == 9
    got, want = oracle(exported, feeds), interpret(graph, feeds)
    assert [o.name for o in exported.graph.output] == [v.name for v in graph.outputs]
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-5)
    return exported


def test_network_round_trip_matches_onnxruntime():
    exported = _round_trip(_network(), {"x": X})
    ops = {n.op_type for n in exported.graph.node}
    assert {"Reshape", "Slice", "Split", "Pad", "Clip", "Resize", "Tile", "Expand"} <= ops


@pytest.mark.parametrize("op, inputs, attrs, opset", [
    ("Resize", [X, None, None, C(_ints(1, 3, 5, 11))], {"mode": "nearest"}, 13),
    ("Resize", [X, C(np.array([0.1, 0.5, 0.9, 0.75], np.float32)), None, C(_ints(7, 3))],
     {"axes": [3, 2], "mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"}, 18),
    ("Clip", [X.astype(np.int32), None, C(np.int32(1))], {}, 13),
    ("Slice", [X, C(_ints(5)), C(_ints(-100)), C(_ints(3)), C(_ints(-2))], {}, 13),
    ("ReduceMax", [X], {"axes": [1], "keepdims": 0}, 13),
    ("Gather", [X, C(np.array([0, -1], np.int64))], {"axis": 2}, 13),
    ("ConvTranspose", [X, C(np.ones((3, 2, 3, 3), np.float32))], {"strides": [2, 2], "pads": [0, 1, 1, 0]},
     13),
    ("LayerNormalization", [X, C(np.ones(8, np.float32))], {}, 17),
])
def test_single_op_round_trip(op, inputs, attrs, opset):
    _round_trip(*one_node(op, inputs, attrs, opset))


def test_constant_and_input_outputs_round_trip():
    nodes = [helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Relu", ["x"], ["r"])]
    _round_trip(model(nodes, {"x": X}, ["shape", "x", "r"]), {"x": X})


def test_fused_conv_relu_exports_as_conv_then_relu():
    """The IR's Conv activation is not ONNX: export writes Conv + Relu, and ONNX Runtime agrees."""
    from nnforge.passes import PassManager

    node = helper.make_node
    nodes = [node("Conv", ["x", "w", "b"], ["conv"], pads=[1, 1, 1, 1]), node("Relu", ["conv"], ["r"]),
             node("Conv", ["r", "w2"], ["conv2"]), node("Relu", ["conv2"], ["y"])]
    consts = {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
              "b": rng.standard_normal(4).astype(np.float32),
              "w2": rng.standard_normal((2, 4, 1, 1)).astype(np.float32)}
    graph = PassManager(["simplify"]).run(import_model(model(nodes, {"x": X}, ["y"], consts, opset=13)))
    assert [(n.op, n.attrs["activation"]) for n in graph.nodes] == [("Conv", "Relu"), ("Conv", "Relu")]
    exported = export_model(graph)
    onnx.checker.check_model(exported, full_check=True)
    assert [n.op_type for n in exported.graph.node] == ["Conv", "Relu", "Conv", "Relu"]
    assert all("activation" not in [a.name for a in n.attribute] for n in exported.graph.node)
    (got,), (want,) = oracle(exported, {"x": X}), interpret(graph, {"x": X})
    assert [o.name for o in exported.graph.output] == [v.name for v in graph.outputs]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert (want == 0).any()
