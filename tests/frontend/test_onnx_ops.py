"""Per-op import tests: one-node models in old and new opset forms, imported, interpreted and
compared with ONNX Runtime (or onnx.reference where ORT lacks the form)."""
import numpy as np
import pytest

from tests.frontend.onnx_models import C, check_import, one_node

rng = np.random.default_rng(0)
X = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
POS = np.abs(X) + 0.1
W = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
B4 = rng.standard_normal(4).astype(np.float32)
V3 = rng.standard_normal(3).astype(np.float32)
M = rng.standard_normal((3, 4)).astype(np.float32)
I = rng.integers(-5, 5, (3, 4)).astype(np.int64)
BOOL = rng.standard_normal((3, 4)) > 0
BOOL2 = rng.standard_normal((3, 4)) > 0
NAN = np.array([1.0, np.nan, -2.0], np.float32)
IMG = rng.standard_normal((1, 2, 4, 5)).astype(np.float32)
SIGNAL = rng.standard_normal((2, 3, 11)).astype(np.float32)  # 1-D window ops: [N, C, L]


def ints(*v):
    return C(np.array(v, np.int64))


# (id, op, inputs, attrs, opset[, oracle]) -- see one_node for the input conventions.
CASES = [
    *[(op, op, [X], {}, 13) for op in ("Relu", "Sigmoid", "Tanh", "Erf", "Exp", "Neg", "Abs",
                                        "Floor", "Ceil")],
    *[(op, op, [POS], {}, 13) for op in ("Sqrt", "Log", "Reciprocal")],
    ("HardSwish", "HardSwish", [X], {}, 14),
    ("Not", "Not", [BOOL], {}, 13),
    ("IsNaN", "IsNaN", [NAN], {}, 13),
    ("LeakyRelu", "LeakyRelu", [X], {"alpha": 0.3}, 13),
    ("HardSigmoid", "HardSigmoid", [X], {"alpha": 0.3, "beta": 0.4}, 13),
    ("PRelu", "PRelu", [X, C(rng.random((3, 1, 1), np.float32))], {}, 13),
    *[(op, op, [X, V3.reshape(3, 1, 1)], {}, 13) for op in ("Add", "Sub", "Mul", "Div")],
    ("Pow", "Pow", [POS, C(np.float32(1.7))], {}, 13),
    ("Div-int", "Div", [I, C(np.array([3, -2, 4, 5], np.int64))], {}, 13),
    *[(op, op, [I, C(np.array([0, 1, -1, 2], np.int64))], {}, 13)
      for op in ("Equal", "Less", "Greater")],
    *[(op, op, [X, C(np.float32(0.1))], {}, 12) for op in ("LessOrEqual", "GreaterOrEqual")],
    *[(op, op, [BOOL, BOOL2], {}, 13) for op in ("And", "Or", "Xor")],
    ("Where", "Where", [BOOL, M, C(np.float32(0.5))], {}, 13),
    *[(op, op, [M, M * 2, C(np.ones(4, np.float32))], {}, 13) for op in ("Sum", "Max", "Min", "Mean")],
    ("Clip-7-attrs", "Clip", [X], {"min": -0.5, "max": 0.7}, 7),
    ("Clip-13-inputs", "Clip", [X, C(np.float32(-0.5)), C(np.float32(0.7))], {}, 13),
    ("Clip-13-max-only", "Clip", [X, None, C(np.float32(0.7))], {}, 13),
    ("Softmax-11-coerce", "Softmax", [X], {"axis": 1}, 11),
    ("Softmax-11-last", "Softmax", [X], {"axis": -1}, 11),
    ("Softmax-13-axis", "Softmax", [X], {"axis": 1}, 13),
    ("LogSoftmax-9-default", "LogSoftmax", [X], {}, 9),
    ("LogSoftmax-13-default", "LogSoftmax", [X], {}, 13),
    ("Cast-int32", "Cast", [X * 10], {"to": 6}, 13),
    ("Cast-float16", "Cast", [X], {"to": 10}, 9),
    ("Conv-pads-strides", "Conv", [X, C(W), C(B4)], {"pads": [1, 0, 2, 1], "strides": [2, 1]}, 11),
    ("Conv-group-dilation", "Conv", [np.concatenate([X, X], 1), C(rng.random((4, 3, 3, 3), np.float32))],
     {"group": 2, "dilations": [2, 1]}, 11),
    *[(f"Conv-{pad}", "Conv", [X, C(W)], {"auto_pad": pad, "strides": [2, 2]}, 11)
      for pad in ("SAME_UPPER", "SAME_LOWER", "VALID")],
    ("ConvTranspose-outpad", "ConvTranspose", [IMG, C(rng.random((2, 3, 3, 3), np.float32)),
                                               C(V3)],
     {"strides": [2, 2], "output_padding": [1, 0], "pads": [1, 0, 0, 1]}, 11),
    ("ConvTranspose-output_shape", "ConvTranspose", [IMG, C(rng.random((2, 3, 3, 3), np.float32))],
     {"strides": [2, 2], "output_shape": [9, 10]}, 11),
    ("ConvTranspose-SAME_UPPER", "ConvTranspose", [IMG, C(rng.random((2, 3, 3, 3), np.float32))],
     {"strides": [2, 2], "auto_pad": "SAME_UPPER"}, 11, "ref"),
    ("Conv-1d", "Conv", [SIGNAL, C(W[:, :, 0]), C(B4)], {"pads": [2, 1], "strides": [2], "dilations": [2]}, 11),
    ("Conv-1d-runtime-weight", "Conv", [SIGNAL, W[:2, :, 0]], {"auto_pad": "SAME_LOWER", "strides": [3]}, 11),
    ("ConvTranspose-1d", "ConvTranspose", [SIGNAL, C(rng.random((3, 2, 3), np.float32))],
     {"strides": [2], "pads": [1, 0], "output_padding": [1]}, 11),
    ("MaxPool-1d", "MaxPool", [SIGNAL], {"kernel_shape": [3], "strides": [2], "pads": [1, 2],
                                         "ceil_mode": 1}, 12),
    ("AveragePool-1d", "AveragePool", [SIGNAL], {"kernel_shape": [4], "auto_pad": "SAME_UPPER",
                                                 "strides": [3]}, 11),
    ("Gemm-7", "Gemm", [M.T.copy(), C(M.T.copy()), C(V3)], {"transA": 1, "alpha": 0.5, "beta": 2.0}, 7),
    ("Gemm-13-no-c", "Gemm", [M.T.copy(), C(M.T.copy())], {"transB": 1}, 13),
    ("MatMul-batched", "MatMul", [X, C(rng.random((6, 2), np.float32))], {}, 13),
    *[(f"BatchNorm-{opset}", "BatchNormalization",
       [X, C(V3), C(V3 + 1), C(V3 * 0.1), C(np.abs(V3) + 0.5)], {"epsilon": 1e-3}, opset)
      for opset in (7, 9, 15)],
    ("LRN", "LRN", [X], {"size": 3, "alpha": 0.01, "beta": 0.6, "bias": 2.0}, 13),
    ("LayerNorm-last", "LayerNormalization", [X, C(rng.random(6, np.float32)), C(rng.random(6, np.float32))],
     {}, 17),
    ("LayerNorm-axis1", "LayerNormalization", [X, C(rng.random((3, 5, 6), np.float32))], {"axis": 1}, 17),
    ("MaxPool-8", "MaxPool", [X], {"kernel_shape": [2, 2], "strides": [2, 2]}, 8),
    ("MaxPool-12-ceil-dil", "MaxPool", [X], {"kernel_shape": [2, 2], "strides": [2, 2],
                                            "ceil_mode": 1, "dilations": [1, 2]}, 12),
    ("MaxPool-same", "MaxPool", [X], {"kernel_shape": [3, 3], "strides": [2, 2],
                                     "auto_pad": "SAME_UPPER"}, 11),
    ("AveragePool-pad", "AveragePool", [X], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1],
                                            "count_include_pad": 1}, 7),
    ("AveragePool-ceil", "AveragePool", [X], {"kernel_shape": [2, 3], "strides": [2, 2],
                                             "ceil_mode": 1}, 10),
    ("AveragePool-same-lower", "AveragePool", [X], {"kernel_shape": [3, 3], "strides": [2, 2],
                                                   "auto_pad": "SAME_LOWER"}, 11),
    ("GlobalAveragePool", "GlobalAveragePool", [X], {}, 13),
    ("GlobalMaxPool", "GlobalMaxPool", [X], {}, 13),
    ("Concat", "Concat", [X, C(X[:, :1])], {"axis": -3}, 13),
    ("Split-11-attr", "Split", [X], {"axis": 3, "split": [1, 5]}, 11),
    ("Split-13-input", "Split", [X, ints(2, 1, 3)], {"axis": -1}, 13),
    ("Split-13-equal", "Split", [X], {"axis": 3}, 13),
    ("Split-18-num_outputs", "Split", [X], {"axis": 2, "num_outputs": 2}, 18),
    ("Slice-9-attrs", "Slice", [X], {"starts": [1, -3], "ends": [1000, -1], "axes": [1, 3]}, 9),
    ("Slice-13-neg-steps", "Slice", [X, ints(-1, 4), ints(-1000, 0), ints(2, -1), ints(-2, -3)], {}, 13),
    ("Slice-13-default-axes", "Slice", [X, ints(0, 1), ints(1, 3)], {}, 13),
    ("Reshape-7", "Reshape", [X, ints(0, -1, 5)], {}, 7),
    ("Reshape-14-allowzero", "Reshape", [X, ints(6, 30)], {"allowzero": 1}, 14),
    ("Transpose-default", "Transpose", [X], {}, 13),
    ("Transpose-perm", "Transpose", [X], {"perm": [0, 2, 3, 1]}, 13),
    *[(f"Flatten-{axis}", "Flatten", [X], {"axis": axis}, 13) for axis in (0, 2, -1)],
    ("Squeeze-11-attr", "Squeeze", [X[:, :1]], {"axes": [-3]}, 11),
    ("Squeeze-13-all", "Squeeze", [X[:1, :1]], {}, 13),
    ("Squeeze-13-input", "Squeeze", [X[:1], ints(0)], {}, 13),
    ("Unsqueeze-11-attr", "Unsqueeze", [M], {"axes": [0, 3]}, 11),
    ("Unsqueeze-13-input", "Unsqueeze", [M, ints(-1, 1)], {}, 13),
    ("Gather", "Gather", [X, C(np.array([[0, -1], [2, 1]], np.int64))], {"axis": -2}, 13),
    ("Gather-int32", "Gather", [M, C(np.array([2, 0], np.int32))], {}, 13),
    ("GatherElements", "GatherElements", [M, C(np.array([[0, 2, -1, 1]], np.int64))], {"axis": 0}, 13),
    ("Pad-7-reflect", "Pad", [X], {"pads": [0, 0, 1, 2, 0, 0, 2, 1], "mode": "reflect"}, 7),
    ("Pad-13-value", "Pad", [X, ints(0, 1, 1, -1, 0, 0, 2, 2), C(np.float32(0.5))], {}, 13),
    ("Pad-18-axes-edge", "Pad", [X, ints(1, 2, 3, 0), None, ints(-1, 2)], {"mode": "edge"}, 18),
    ("ReduceMean-13-attr", "ReduceMean", [X], {"axes": [-1, 1], "keepdims": 0}, 13),
    ("ReduceSum-13-input", "ReduceSum", [X, ints(2)], {}, 13),
    ("ReduceSum-13-all", "ReduceSum", [X], {"keepdims": 0}, 13),
    ("ReduceSum-11-attr", "ReduceSum", [X], {"axes": [0, 2]}, 11),
    ("ReduceMax-18-input", "ReduceMax", [X, ints(-1)], {}, 18),
    ("ReduceMin-11", "ReduceMin", [X], {"axes": [3], "keepdims": 0}, 11),
    ("ReduceProd-18-noop", "ReduceProd", [X], {"noop_with_empty_axes": 1}, 18),
    ("Expand", "Expand", [V3.reshape(3, 1), ints(2, 1, 4)], {}, 13),
    ("Tile", "Tile", [M, ints(2, 1)], {}, 13),
    ("Identity", "Identity", [X], {}, 13),
    ("Dropout-7", "Dropout", [X], {"ratio": 0.3}, 7),
    ("Resize-10-nearest", "Resize", [IMG, C(np.array([1, 1, 2, 1.5], np.float32))], {}, 10),
    ("Resize-11-linear", "Resize", [IMG, C(np.zeros(0, np.float32)), C(np.array([1, 1, 2, 0.6], np.float32))],
     {"mode": "linear"}, 11),
    ("Resize-13-sizes-cubic", "Resize", [IMG, None, None, ints(1, 2, 7, 3)], {"mode": "cubic"}, 13),
    ("Resize-13-align-corners", "Resize", [IMG, None, C(np.array([1, 1, 2, 2], np.float32))],
     {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, 13),
    ("Resize-18-axes-not-larger", "Resize", [IMG, None, None, ints(7, 7)],
     {"axes": [2, 3], "keep_aspect_ratio_policy": "not_larger"}, 18, "ref"),
    ("Resize-19-nearest-ceil", "Resize", [IMG, None, C(np.array([1, 1, 1.7, 2.5], np.float32))],
     {"nearest_mode": "ceil", "coordinate_transformation_mode": "half_pixel_symmetric"}, 19, "ref"),
    ("Resize-19-crop-and-resize-axes", "Resize",
     [IMG, C(np.array([0.8, 0.125, 0.2, 0.75], np.float32)), None, ints(3, 6)],
     {"axes": [3, 2], "mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize",
      "extrapolation_value": 2.0}, 19, "ref"),
    ("Resize-13-crop-and-resize", "Resize",
     [IMG, C(np.array([0, 0, 0.25, -0.5, 1, 1, 1, 0.5], np.float32)), C(np.array([1, 1, 1.5, 1.2], np.float32))],
     {"mode": "cubic", "coordinate_transformation_mode": "tf_crop_and_resize"}, 13),
    ("Upsample-7-attr", "Upsample", [IMG], {"scales": [1.0, 1.0, 2.0, 3.0]}, 7),
    ("Upsample-9-input", "Upsample", [IMG, C(np.array([1, 1, 2, 2], np.float32))], {"mode": "linear"}, 9),
]


SPLIT_OUTPUTS = {"Split-11-attr": 2, "Split-13-input": 3, "Split-13-equal": 2, "Split-18-num_outputs": 2}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_op_matches_oracle(case):
    name, op, inputs, attrs, opset, *use = case
    proto, feeds = one_node(op, inputs, attrs, opset, SPLIT_OUTPUTS.get(name, 1))
    check_import(proto, feeds, *use)


def test_softmax_before_13_is_wrapped_in_reshapes():
    proto, feeds = one_node("Softmax", [X], {"axis": 1}, 11)
    graph = check_import(proto, feeds)
    assert [n.op for n in graph.nodes] == ["Reshape", "Softmax", "Reshape"]
    assert graph.nodes[0].attrs["shape"] == (2, 90) and graph.nodes[1].attrs["axis"] == 1


def test_dropout_mask_is_constant_ones():
    proto, feeds = one_node("Dropout", [X, C(np.float32(0.5)), C(np.array(False))], {}, 13, n_outputs=2)
    graph = check_import(proto, feeds)
    assert [n.op for n in graph.nodes] == ["Reshape"]  # out0 aliases in0: a copy keeps its name
    mask = graph.outputs[1]
    assert mask.is_constant and mask.data.dtype == bool and mask.data.all()


def test_static_inputs_become_normalized_attributes():
    proto, feeds = one_node("Slice", [X, ints(-1, 4), ints(-1000, 0), ints(2, -1), ints(-2, -3)], {}, 13)
    (node,) = check_import(proto, feeds).nodes
    assert node.attrs == {"starts": (4, 4), "ends": (-1, 0), "axes": (2, 3), "steps": (-2, -3)}


def test_1d_window_ops_run_as_2d_between_reshapes():
    proto, feeds = one_node("Conv", [SIGNAL, C(W[:, :, 0])], {"pads": [1, 1]}, 11)
    graph = check_import(proto, feeds)
    assert [n.op for n in graph.nodes] == ["Reshape", "Conv", "Reshape"]
    conv = graph.nodes[1]
    assert conv.inputs[1].is_constant and conv.inputs[1].type.shape == (4, 3, 1, 3)
    assert conv.attrs["pads"] == (0, 1, 0, 1) and conv.attrs["strides"] == (1, 1)


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
def test_layer_norm_mean_and_inv_std_dev_outputs(dtype):
    """Mean and InvStdDev are computed in stash_type (float32) whatever x's dtype, as ORT."""
    x = (X * 3 + 1).astype(dtype)
    proto, feeds = one_node("LayerNormalization", [x, C(np.ones((5, 6), dtype))],
                            {"axis": -2, "epsilon": 0.1}, 17, n_outputs=3)
    graph = check_import(proto, feeds, rtol=1e-3, atol=1e-3)
    assert [v.type.dtype for v in graph.outputs] == [dtype, "float32", "float32"]
    assert graph.outputs[1].type.shape == (2, 3, 1, 1)


def test_layer_norm_unread_statistics_add_no_nodes():
    proto, feeds = one_node("LayerNormalization", [X, C(np.ones(6, np.float32))], {}, 17, n_outputs=3)
    proto.graph.output.pop()  # InvStdDev unread: Mean only
    assert [n.op for n in check_import(proto, feeds).nodes] == ["LayerNormalization", "ReduceMean"]
    proto.graph.output.pop()
    assert [n.op for n in check_import(proto, feeds).nodes] == ["LayerNormalization"]
