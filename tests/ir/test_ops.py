"""Every registered op: its numpy reference against ONNX's on a one-node model, and its
inferred type against the reference's output; bad operands raise ShapeError."""
from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import helper
from onnx_oracle import run_onnx_node

from nnforge.errors import NnforgeError, ShapeError
from nnforge.ir import OPS, TensorType, get_op
from nnforge.ir.registry import Cost

rng = np.random.default_rng(0)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def i64(*values):
    return np.array(values, dtype=np.int64)


def case(op, inputs, attrs=None, *, onnx_inputs=None, onnx_attrs=None, onnx_op=None,
         oracle="reference", tol=1e-5, id=None):
    """One op test: the IR form (inputs, normalized attrs) and the ONNX form of the same node
    (by default identical)."""
    attrs = attrs or {}
    onnx_form = (onnx_op or op, inputs if onnx_inputs is None else onnx_inputs,
                 attrs if onnx_attrs is None else onnx_attrs, oracle)
    return pytest.param(op, inputs, attrs, onnx_form, tol, id=id or op)


UNARY_FLOAT = ["Relu", "Neg", "Abs", "Sigmoid", "Tanh", "Erf", "Exp", "Floor", "Ceil", "HardSwish"]
POSITIVE = np.abs(f32(3, 4)) + np.float32(0.1)
NAN_INPUT = np.array([1.0, np.nan, -np.inf, 0.0], np.float32)
BOOLS = (rng.random((2, 3)) > 0.5, rng.random((3,)) > 0.5)


def slice_case(shape, starts, ends, axes, steps, id):
    # ONNX spells "through index 0" for a negative step as a very negative end
    onnx_ends = [e if not (e == -1 and s < 0) else -(2 ** 62) for e, s in zip(ends, steps)]
    return case("Slice", [f32(*shape)], dict(starts=starts, ends=ends, axes=axes, steps=steps), id=id,
                onnx_attrs={"_inputs": [i64(*starts), i64(*onnx_ends), i64(*axes), i64(*steps)]})


def resize_case(x, mode, ctm, *, scales=None, sizes=None, nearest_mode="round_prefer_floor",
                exclude_outside=0, cubic_coeff_a=-0.75, roi=None):
    """Resize given ONNX-style by scales or by sizes; the IR form carries both (and `roi`,
    tf_crop_and_resize's starts then ends for every axis: by default the whole input)."""
    if sizes is None:
        sizes = [int(math.floor(d * s)) for d, s in zip(x.shape, scales)]
        scales = [float(np.float32(s)) for s in scales]  # ONNX reads scales as float32
        onnx_tail = [np.array(scales, np.float32)]
    else:
        scales = [s / d for s, d in zip(sizes, x.shape)]  # onnx.reference's float64 ratio
        onnx_tail = [None, i64(*sizes)]
    onnx_roi = np.array(roi or [0.0] * x.ndim + [1.0] * x.ndim, np.float32) \
        if ctm == "tf_crop_and_resize" else None
    common = dict(mode=mode, coordinate_transformation_mode=ctm, nearest_mode=nearest_mode,
                  exclude_outside=exclude_outside, cubic_coeff_a=cubic_coeff_a)
    return case("Resize", [x], dict(common, scales=scales, sizes=sizes, roi=roi or []),
                onnx_attrs=dict(common, _inputs=[onnx_roi, *onnx_tail]), tol=1e-4,
                id=f"Resize-{mode}-{ctm}-{nearest_mode}-{'sizes' if len(onnx_tail) > 1 else 'scales'}"
                   f"{'-roi' if roi else ''}")


CASES = [
    *[case(op, [f32(2, 3, 5)]) for op in UNARY_FLOAT],
    case("Sqrt", [POSITIVE]), case("Log", [POSITIVE]), case("Reciprocal", [POSITIVE]),
    case("Relu", [np.array([-3, 0, 4], np.int32)], id="Relu-int32"),
    case("Abs", [np.array([-3, 0, 4], np.int64)], id="Abs-int64"),
    case("Not", [BOOLS[0]]), case("IsNaN", [NAN_INPUT]),
    case("LeakyRelu", [f32(4, 5)], {"alpha": 0.2}),
    case("HardSigmoid", [f32(4, 5) * 4], {"alpha": 0.3, "beta": 0.4}),
    case("Clip", [f32(4, 5)], {"min": -0.5, "max": 0.7},
         onnx_attrs={"_inputs": [np.float32(-0.5), np.float32(0.7)]}),
    case("Clip", [f32(4, 5)], {"min": -0.5}, onnx_attrs={"_inputs": [np.float32(-0.5)]},
         id="Clip-min-only"),
    case("Clip", [np.arange(-5, 5, dtype=np.int32)], {"min": -2, "max": 3},
         onnx_attrs={"_inputs": [np.int32(-2), np.int32(3)]}, id="Clip-int32"),
    case("Clip", [np.array([-2 ** 62, 5, 2 ** 62], np.int64)], {"min": 0},
         onnx_attrs={"_inputs": [np.int64(0)]}, id="Clip-int64-min-only"),
    case("PRelu", [f32(2, 3, 4), f32(3, 1)]),
    *[case(op, [f32(2, 1, 4), f32(3, 1)]) for op in ("Add", "Sub", "Mul", "Div")],
    case("Div", [np.array([7, -7, 7, -7, 9], np.int32), np.array([2, 2, -2, -2, 3], np.int32)],
         id="Div-int-truncates", oracle="ort"),
    case("Pow", [POSITIVE, f32(4)]),
    case("Pow", [POSITIVE, np.array([2], np.int64)], id="Pow-int-exponent"),
    case("Max", [f32(2, 3), f32(3), f32(1, 1)]), case("Min", [f32(2, 3), f32(3)]),
    case("Sum", [f32(2, 3), f32(2, 1), f32(3)]), case("Mean", [f32(2, 3), f32(3)]),
    case("Max", [f32(4)], id="Max-one-input"),
    *[case(op, [np.round(f32(2, 3)), np.round(f32(3))]) for op in
      ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual")],
    *[case(op, list(BOOLS)) for op in ("And", "Or", "Xor")],
    case("Where", [BOOLS[1], f32(2, 3), f32(2, 1)]),
    case("Cast", [f32(3, 4) * 5], {"to": "int32"}, onnx_attrs={"to": helper.np_dtype_to_tensor_dtype(np.dtype("int32"))}),
    case("Cast", [np.arange(5, dtype=np.int64)], {"to": "float32"}, id="Cast-int-float",
         onnx_attrs={"to": helper.np_dtype_to_tensor_dtype(np.dtype("float32"))}),
    # -- nn -----------------------------------------------------------------
    case("Conv", [f32(2, 3, 9, 8), f32(4, 3, 3, 3), f32(4)],
         {"strides": [2, 1], "pads": [1, 0, 2, 1], "dilations": [1, 2]}, tol=1e-4),
    case("Conv", [f32(1, 6, 7, 7), f32(4, 3, 3, 2)], {"group": 2, "pads": [1, 1, 1, 1]},
         id="Conv-grouped", tol=1e-4),
    case("Conv", [f32(1, 4, 6, 6), f32(4, 1, 3, 3)], {"group": 4, "strides": [2, 2]},
         id="Conv-depthwise", tol=1e-4),
    case("ConvTranspose", [f32(1, 4, 5, 4), f32(4, 3, 3, 3), f32(6)],
         {"strides": [2, 3], "pads": [1, 0, 1, 2], "dilations": [1, 2], "group": 2,
          "output_padding": [1, 1]}, oracle="ort", tol=1e-4),  # onnx.reference: no groups
    case("ConvTranspose", [f32(2, 3, 4, 4), f32(3, 2, 2, 3)], {"strides": [2, 2]},
         id="ConvTranspose-plain", tol=1e-4),
    case("Gemm", [f32(3, 5), f32(4, 5), f32(4)], {"alpha": 0.5, "beta": 2.0, "transB": 1}, tol=1e-4),
    case("Gemm", [f32(5, 3), f32(5, 4)], {"transA": 1}, id="Gemm-transA-no-c", tol=1e-4),
    case("MatMul", [f32(2, 1, 3, 5), f32(4, 5, 2)], tol=1e-4),
    case("MatMul", [f32(5), f32(2, 5, 3)], id="MatMul-1d", tol=1e-4),
    case("BatchNormalization", [f32(2, 3, 4, 5), f32(3), f32(3), f32(3), POSITIVE[0, :3]],
         {"epsilon": 1e-3}, tol=1e-4),
    # onnx.reference's LRN disagrees with the ONNX formula; ONNX Runtime follows it
    case("LRN", [f32(2, 6, 3, 3)], {"size": 3, "alpha": 0.01, "beta": 0.6, "bias": 2.0},
         oracle="ort", tol=1e-4),
    case("LayerNormalization", [f32(2, 3, 4), f32(3, 4), f32(4)], {"axis": 1}, tol=1e-4),
    case("LayerNormalization", [f32(2, 5), f32(5)], {"axis": 1, "epsilon": 0.1},
         id="LayerNormalization-no-bias", tol=1e-4),
    case("Softmax", [f32(2, 3, 4)], {"axis": 1}), case("LogSoftmax", [f32(2, 3, 4)], {"axis": 2}),
    case("MaxPool", [f32(1, 2, 7, 8)], {"kernel_shape": [3, 2], "strides": [2, 2],
                                        "pads": [1, 0, 1, 1], "dilations": [1, 2]}),
    case("MaxPool", [f32(1, 2, 6, 6)], {"kernel_shape": [3, 3], "strides": [2, 2],
                                        "ceil_mode": 1}, id="MaxPool-ceil"),
    case("MaxPool", [np.arange(-25, 25, dtype=np.int8).reshape(1, 2, 5, 5)],
         {"kernel_shape": [2, 2], "pads": [1, 1, 0, 0]}, id="MaxPool-int8", oracle="ort"),
    *[case("AveragePool", [f32(1, 2, 7, 6)],
           {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 0],
            "ceil_mode": ceil, "count_include_pad": include}, id=f"AveragePool-{ceil}{include}")
      for ceil in (0, 1) for include in (0, 1)],
    case("AveragePool", [f32(1, 1, 8, 8)], {"kernel_shape": [2, 3], "dilations": [2, 2],
                                            "pads": [1, 1, 1, 1]}, id="AveragePool-dilated"),
    case("GlobalAveragePool", [f32(2, 3, 4, 5)]), case("GlobalMaxPool", [f32(2, 3, 4)], oracle="ort"),
    # -- reductions ---------------------------------------------------------
    *[case(op, [f32(2, 3, 4)], {"axes": [0, 2], "keepdims": keep},
           onnx_attrs={"keepdims": keep, "_inputs": [i64(0, 2)]}, id=f"{op}-keep{keep}")
      for op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd")
      for keep in (0, 1)],
    case("ReduceSum", [np.arange(24, dtype=np.int32).reshape(2, 3, 4)], {"axes": [1]},
         onnx_attrs={"_inputs": [i64(1)]}, id="ReduceSum-int32"),
    # -- data movement ------------------------------------------------------
    case("Reshape", [f32(2, 3, 4)], {"shape": [4, 6]}, onnx_attrs={"_inputs": [i64(4, 6)]}),
    case("Transpose", [f32(2, 3, 4)], {"perm": [2, 0, 1]}),
    case("Concat", [f32(2, 3), f32(2, 1), f32(2, 2)], {"axis": 1}),
    case("Split", [f32(2, 7)], {"axis": 1, "split": [2, 0, 5]},
         onnx_attrs={"axis": 1, "_inputs": [i64(2, 0, 5)]}),
    slice_case((5, 6, 7), [1, 0], [4, 6], [0, 2], [2, 3], "Slice-positive"),
    slice_case((5, 6), [4], [-1], [1], [-2], "Slice-negative-through-0"),
    slice_case((5, 6), [3, 9], [0, 2], [0, 1], [-1, -3], "Slice-negative-clamped"),
    case("Gather", [f32(5, 4), np.array([[0, -1], [3, 2]], np.int64)], {"axis": 0}),
    case("Gather", [f32(3, 5), np.array([4, -5, 1], np.int32)], {"axis": 1}, id="Gather-axis1"),
    case("GatherElements", [f32(3, 4), np.array([[0, -1, 2], [2, 1, 0]], np.int64)], {"axis": 1},
         oracle="ort"),  # onnx.reference wants equal off-axis sizes
    *[case("Pad", [f32(3, 4)], {"pads": [1, 2, 2, 1], "mode": mode, "value": 1.5},
           onnx_attrs={"mode": mode, "_inputs": [i64(1, 2, 2, 1), np.float32(1.5)]},
           id=f"Pad-{mode}") for mode in ("constant", "reflect", "edge", "wrap")],
    case("Pad", [f32(3, 4)], {"pads": [-1, 2, 1, -2], "value": 0.0}, oracle="ort",
         onnx_attrs={"_inputs": [i64(-1, 2, 1, -2)]}, id="Pad-negative"),
    case("Expand", [f32(3, 1)], {"shape": [2, 3, 4]}, onnx_attrs={"_inputs": [i64(2, 3, 4)]}),
    case("Tile", [f32(2, 3)], {"repeats": [2, 3]}, onnx_attrs={"_inputs": [i64(2, 3)]}),
    *[resize_case(f32(1, 2, 4, 5), mode, ctm, scales=[1, 1, 2.0, 1.5])
      for mode in ("nearest", "linear", "cubic")
      for ctm in ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                  "asymmetric", "tf_crop_and_resize")],
    *[resize_case(f32(1, 1, 6, 7), "nearest", "asymmetric", sizes=[1, 1, 4, 10], nearest_mode=nm)
      for nm in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")],
    resize_case(f32(1, 1, 7, 9), "cubic", "half_pixel", sizes=[1, 1, 3, 4], exclude_outside=1,
                cubic_coeff_a=-0.5),
    resize_case(f32(1, 1, 5, 5), "linear", "pytorch_half_pixel", sizes=[1, 1, 1, 3]),
    # crops, a flipped axis, a region reaching outside the input (extrapolated), one output row
    *[resize_case(f32(1, 2, 6, 7), mode, "tf_crop_and_resize", sizes=[1, 2, 1, 9],
                  roi=[0.0, 0.0, 0.25, 0.875, 1.0, 1.0, 0.75, -0.25]) for mode in ("nearest", "linear", "cubic")],
    resize_case(f32(1, 2, 6, 7), "linear", "tf_crop_and_resize", scales=[1, 1, 0.5, 2.0],
                roi=[0.0, 0.5, 0.5, 0.125, 1.0, 1.0, 1.0, 0.625]),
]


U8X = rng.integers(0, 256, (1, 3, 5, 6), dtype=np.uint8)
I8W = rng.integers(-128, 128, (4, 3, 3, 3), dtype=np.int8)
I8X = rng.integers(-128, 128, (3, 7), dtype=np.int8)
I32B = rng.integers(-3000, 3000, 4).astype(np.int32)
I8B = rng.integers(-128, 128, (7, 5), dtype=np.int8)
scalar = lambda v, dtype: np.array(v, dtype)  # noqa: E731
# the integer ops against ONNX's QLinear forms with scales x*w/y = 1/256: ONNX rounds half to even,
# nnforge half up (ir/ops/quant.py), so they may differ by 1
CASES += [
    case("QuantizeLinear", [f32(3, 4), scalar(0.05, np.float32), scalar(3, np.int8)], {"axis": 1}),
    case("QuantizeLinear", [f32(2, 3, 2), np.array([0.1, 0.02, 0.05], np.float32), np.array([0, 9, 250], np.uint8)],
         {"axis": 1}, id="QuantizeLinear-per-axis"),
    case("DequantizeLinear", [I8X, scalar(0.1, np.float32), scalar(-4, np.int8)], {"axis": 1}),
    case("QConv", [U8X, I8W, I32B],
         {"pads": (1, 0, 1, 2), "strides": (1, 2), "shift": (8,), "x_zero_point": 7, "out_zero_point": 5,
          "out_dtype": "uint8"}, onnx_op="QLinearConv", tol=1,
         onnx_inputs=[U8X, scalar(1, np.float32), scalar(7, np.uint8), I8W, scalar(1, np.float32),
                      scalar(0, np.int8), scalar(256, np.float32), scalar(5, np.uint8),
                      I32B], onnx_attrs={"pads": (1, 0, 1, 2), "strides": (1, 2)}),
    case("QMatMul", [I8X, I8B], {"shift": (8,), "x_zero_point": -3}, onnx_op="QLinearMatMul", tol=1,
         onnx_inputs=[I8X, scalar(1, np.float32), scalar(-3, np.int8), I8B, scalar(1, np.float32),
                      scalar(0, np.int8), scalar(256, np.float32), scalar(0, np.int8)], onnx_attrs={}),
    case("FusedElementwise", [f32(3, 4)], {"expr": "Relu($0)"}, onnx_op="Relu", onnx_attrs={}),
]
# several ONNX nodes in one: tested against the interpreter in tests/codegen/test_conv2d_fused_layer.py
MULTI_NODE_OPS = {"FusedLayerConv"}


def _onnx_inputs(inputs, attrs):
    """Split the test's ONNX attrs into real attributes and extra tensor inputs."""
    attrs = dict(attrs)
    extra = attrs.pop("_inputs", [])
    return list(inputs) + list(extra), attrs


@pytest.mark.parametrize("op, inputs, attrs, onnx_form, tol", CASES)
def test_reference_matches_onnx(op, inputs, attrs, onnx_form, tol):
    opdef = get_op(op)
    normalized = opdef.check_attrs(attrs)
    types = opdef.infer_types([TensorType.of(a) for a in inputs], normalized)
    ours = opdef.run(inputs, normalized)
    assert [TensorType.of(o) for o in ours] == types, "inferred types differ from the reference's"

    onnx_op, onnx_inputs, onnx_attrs, oracle = onnx_form
    onnx_inputs, onnx_attrs = _onnx_inputs(onnx_inputs, onnx_attrs)
    expected = run_onnx_node(onnx_op, onnx_inputs, onnx_attrs, len(ours), oracle)
    for got, want in zip(ours, expected):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_every_op_is_tested():
    tested = {p.values[0] for p in CASES}
    assert sorted(set(OPS) - tested - MULTI_NODE_OPS) == []


def test_conv_is_fast_enough_for_imagenet_models():
    """A ResNet-50 stage-2 3x3 conv through the reference takes well under a second."""
    import time

    x, w = f32(1, 64, 56, 56), f32(64, 64, 3, 3)
    attrs = get_op("Conv").check_attrs({"pads": [1, 1, 1, 1]})
    start = time.perf_counter()
    get_op("Conv").run([x, w], attrs)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("op, types, attrs, message", [
    ("Add", [("float32", (2, 3)), ("float32", (4,))], {}, "do not broadcast"),
    ("Add", [("float32", (2,)), ("int64", (2,))], {}, "dtypes differ"),
    ("Conv", [("float32", (1, 3, 8, 8)), ("float32", (4, 2, 3, 3))], {}, "channel mismatch"),
    ("Conv", [("float32", (1, 3, 2, 2)), ("float32", (4, 3, 3, 3))], {}, "does not fit"),
    ("Conv", [("float32", (1, 3, 8, 8)), ("float32", (4, 3, 3, 3)), ("float32", (3,))], {},
     "bias shape"),
    ("Transpose", [("float32", (2, 3))], {"perm": [0, 0]}, "not a permutation"),
    ("Reshape", [("float32", (2, 3))], {"shape": [4, 2]}, "cannot reshape"),
    ("Gemm", [("float32", (2, 3)), ("float32", (4, 5))], {}, "inner dimensions"),
    ("MatMul", [("float32", (2, 3)), ("float32", (4, 5))], {}, "inner dimensions"),
    ("Concat", [("float32", (2, 3)), ("float32", (3, 3))], {"axis": 1}, "cannot concatenate"),
    ("Split", [("float32", (2, 6))], {"axis": 1, "split": [2, 3]}, "sum to"),
    ("Softmax", [("float32", (2, 3))], {"axis": 2}, "out of range"),
    ("ReduceSum", [("float32", (2, 3))], {"axes": [1, 0]}, "sorted"),
    ("Slice", [("float32", (5,))], {"starts": [-1], "ends": [3], "axes": [0], "steps": [1]},
     "not normalized"),
    ("Gather", [("float32", (5,)), ("float32", (2,))], {}, "int32 or int64"),
    ("Where", [("float32", (2,)), ("float32", (2,)), ("float32", (2,))], {}, "must be bool"),
    ("Sqrt", [("int32", (2,))], {}, "floating point"),
    ("Expand", [("float32", (3, 2))], {"shape": [3, 3]}, "do not broadcast"),
    ("Expand", [("float32", (3, 2))], {"shape": [2]}, "does not expand"),
    ("Resize", [("float32", (1, 4))], {"scales": [1, 2], "sizes": [1, 8], "mode": "area"},
     "unknown mode"),
    ("Resize", [("float32", (1, 4))], {"scales": [1, 2], "sizes": [1, 8], "roi": [0, 0, 1, 1]},
     "roi .*'tf_crop_and_resize'"),
    ("Resize", [("float32", (1, 4))], {"scales": [1, 2], "sizes": [1, 8], "roi": [0, 1],
                                       "coordinate_transformation_mode": "tf_crop_and_resize"},
     "2\\*rank = 4"),
    ("MaxPool", [("float32", (1, 1, 4, 4))], {"kernel_shape": [2, 2], "pads": [2, 0, 0, 0]},
     "smaller than"),
    ("Relu", [("float32", (2,)), ("float32", (2,))], {}, "expected 1 inputs"),
    ("QConv", [("uint8", (1, 3, 5, 5)), ("int8", (4, 3, 3, 3)), ("int32", (4,)), ("uint8", (1, 4, 5, 5))], {},
     "residual r must be int8/uint8\\[1, 4, 3, 3\\]"),
    ("QConv", [("uint8", (1, 3, 5, 5)), ("int8", (4, 3, 1, 1)), ("int32", (4,)), ("int32", (1, 4, 5, 5))], {},
     "residual r must be int8/uint8"),
    ("QConv", [("uint8", (1, 3, 5, 5)), ("int8", (4, 3, 1, 1)), ("int32", (4,)), ("int8", (1, 4, 5, 5))],
     {"residual_zero_point": 200}, "residual_zero_point 200 is outside int8"),
    ("QConv", [("uint8", (1, 3, 5, 5)), ("int8", (4, 3, 1, 1)), ("int32", (4,)), ("int8", (1, 4, 5, 5))],
     {"residual_shift": 63}, "residual_shift in 0..62"),
])
def test_infer_rejects_bad_operands(op, types, attrs, message):
    opdef = get_op(op)
    with pytest.raises(ShapeError, match=message) as info:
        opdef.infer_types([TensorType(d, s) for d, s in types], opdef.check_attrs(attrs), "n1")
    assert f"n1 ({op})" in str(info.value)


def test_attribute_schema_errors():
    with pytest.raises(NnforgeError, match="missing required attribute axis"):
        get_op("Softmax").check_attrs({})
    with pytest.raises(NnforgeError, match="unknown attribute"):
        get_op("Relu").check_attrs({"alpha": 1.0})


@pytest.mark.parametrize("op, types, attrs, expected", [
    ("Conv", [("float32", (1, 3, 8, 8)), ("float32", (4, 3, 3, 3))], {},
     Cost(2 * 1 * 4 * 6 * 6 * 3 * 3 * 3, 4 * (192 + 108), 4 * 144)),
    ("Conv", [("float32", (1, 4, 6, 6)), ("float32", (4, 1, 3, 3))], {"group": 4},
     Cost(2 * 4 * 4 * 4 * 9, 4 * (144 + 36), 4 * 64)),
    ("Gemm", [("float32", (5, 3)), ("float32", (5, 4))], {"transA": 1},
     Cost(2 * 3 * 4 * 5, 4 * 35, 4 * 12)),
    ("MatMul", [("float32", (2, 3, 5)), ("float32", (5, 4))], {},
     Cost(2 * 2 * 3 * 4 * 5, 4 * 50, 4 * 24)),
    ("Transpose", [("float32", (2, 3))], {"perm": [1, 0]}, Cost(0, 24, 24)),
    ("Add", [("float32", (2, 3)), ("float32", (3,))], {}, Cost(6, 36, 24)),
])
def test_costs(op, types, attrs, expected):
    opdef = get_op(op)
    ins = [TensorType(d, s) for d, s in types]
    attrs = opdef.check_attrs(attrs)
    assert opdef.cost(ins, opdef.infer_types(ins, attrs), attrs) == expected


@pytest.mark.parametrize("bias", [True, False])
def test_conv_fused_relu_reference_is_relu_of_onnx_conv(bias):
    """activation="Relu": the reference is ONNX Relu(Conv(x, w, b)), bias added before the clamp."""
    rng = np.random.default_rng(4)
    ins = [rng.standard_normal((1, 3, 6, 6)).astype(np.float32),
           rng.standard_normal((4, 3, 3, 3)).astype(np.float32)]
    ins += [rng.standard_normal(4).astype(np.float32) + 1.0] if bias else []
    opdef = get_op("Conv")
    attrs = opdef.check_attrs({"pads": [1, 0, 1, 2], "activation": "Relu"})
    (ours,) = opdef.run(ins, attrs)
    (conv,) = run_onnx_node("Conv", ins, {"pads": [1, 0, 1, 2]})
    assert [TensorType.of(ours)] == opdef.infer_types([TensorType.of(a) for a in ins], attrs)
    assert (ours == 0).any() and (ours > 0).any()
    np.testing.assert_allclose(ours, np.maximum(conv, 0), rtol=1e-5, atol=1e-5)


def test_conv_activation_must_be_known():
    opdef = get_op("Conv")
    types = [TensorType("float32", (1, 3, 6, 6)), TensorType("float32", (4, 3, 3, 3))]
    with pytest.raises(ShapeError, match="activation 'Elu'") as info:
        opdef.infer_types(types, opdef.check_attrs({"activation": "Elu"}), "n1")
    assert "n1 (Conv)" in str(info.value)


@pytest.mark.parametrize("relu", [False, True])
def test_qconv_residual_within_one_step_of_float(relu):
    """QConv with a residual: within one output step of the float conv + residual (+ ReLU) on the
    same integers, computed by ONNX Runtime's float Conv, requantized in float64 and rounded once."""
    rng = np.random.default_rng(7)
    x, w = rng.integers(0, 256, (2, 5, 7, 6), dtype=np.uint8), rng.integers(-128, 128, (6, 5, 3, 3), dtype=np.int8)
    b = rng.integers(-3000, 3000, 6).astype(np.int32)
    r = rng.integers(-128, 128, (2, 6, 3, 6), dtype=np.int8)
    conv_attrs = {"pads": (1, 1, 0, 1), "strides": (2, 1)}
    attrs = {**conv_attrs, "multiplier": (1234567, 1987654, 1500000, 1100000, 1300000, 1700000), "shift": (31,) * 6,
             "x_zero_point": 100, "out_zero_point": -10, "residual_zero_point": 3, "residual_multiplier": 1431655765,
             "residual_shift": 31, "activation": "Relu" if relu else ""}
    opdef = get_op("QConv")
    (ours,) = opdef.run([x, w, b, r], opdef.check_attrs(attrs))
    (conv,) = run_onnx_node("Conv", [(x.astype(np.float32) - 100), w.astype(np.float32), b.astype(np.float32)],
                            conv_attrs)  # exact: every sum is an integer below 2**24
    factors = np.array(attrs["multiplier"], np.float64)[None, :, None, None] / 2.0**31
    real = conv.astype(np.float64) * factors + (r.astype(np.float64) - 3) * (1431655765 / 2.0**31) - 10
    want = np.clip(np.rint(real), -10 if relu else -128, 127)
    assert ours.dtype == np.int8 and np.unique(ours).size > 50
    assert np.abs(ours.astype(np.int64) - want).max() <= 1
    assert (ours != want).mean() < 0.5  # mostly the same level: rounding twice differs from once only near ties
