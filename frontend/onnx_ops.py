"""ONNX -> IR converters for elementwise, shape and data-movement ops, and the CONVERTERS table.

Each converter takes an OnnxNode and returns the IR Values of the ONNX outputs.
Opset differences are resolved here so the IR sees exactly the forms of ir/OPS.md.
Neural-network ops (Conv, pools, norms, Softmax, Resize) live in onnx_ops_nn.py.
"""
from __future__ import annotations

import math

import numpy as np

from ..ir.registry import broadcast_shapes
from .onnx_load import numpy_dtype, sparse_to_array
from .onnx_node import OnnxNode
from .onnx_ops_nn import NN_CONVERTERS
from .onnx_ops_quant import QUANT_CONVERTERS

# ONNX ops that are IR ops of the same name; value = the attributes passed through.
SAME_OP = {
    **{op: () for op in (
        "Relu", "Sigmoid", "Tanh", "Erf", "Sqrt", "Exp", "Log", "Neg", "Abs", "Reciprocal", "Floor",
        "Ceil", "Not", "IsNaN", "HardSwish", "PRelu", "Add", "Sub", "Mul", "Div", "Pow", "Equal",
        "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Where", "Max",
        "Min", "Sum", "Mean", "MatMul", "GlobalAveragePool", "GlobalMaxPool")},
    "LeakyRelu": ("alpha",),
    "HardSigmoid": ("alpha", "beta"),
    "Gemm": ("alpha", "beta", "transA", "transB"),
    "LRN": ("size", "alpha", "beta", "bias"),
}


def same_op(keep: tuple):
    """Converter emitting the IR op of the same name with the attributes in `keep`."""
    def convert(node: OnnxNode):
        return node.emit(node.op, node.present_inputs(), {k: node.attrs[k] for k in keep if k in node.attrs})
    return convert


def alias(node: OnnxNode):
    # Identity -> no node: the output is the input.
    return [node.input(0)]


def dropout(node: OnnxNode):
    # Inference Dropout is the identity; its mask (if used) keeps everything.
    training = node.static(2, "training_mode")
    if training is not None and bool(np.asarray(training).reshape(())):
        raise node.unsupported("training_mode=True (only inference Dropout is supported)")
    x = node.input(0)
    mask_dtype = "bool" if node.opset >= 10 else x.type.dtype
    mask = node.constant(np.ones(x.type.shape, mask_dtype), 1) if len(node.outputs) > 1 else None
    return [x, mask]


def cast(node: OnnxNode):
    """Cast: `to` (a TensorProto enum) becomes a numpy dtype name; a no-op cast is an alias."""
    dtype = numpy_dtype(node.attr("to"), f"node {node.name} (Cast) attribute to")
    x = node.input(0)
    return [x] if x.type.dtype == dtype else node.emit("Cast", [x], {"to": dtype})


def clip(node: OnnxNode):
    """Clip: min/max are attributes before opset 11, optional constant inputs after."""
    if node.opset < 11:
        low, high = node.attr("min"), node.attr("max")
    else:
        low, high = (None if a is None else float(np.asarray(a).reshape(()))
                     for a in (node.static(1, "min"), node.static(2, "max")))
    return node.emit("Clip", [node.input(0)], {"min": low, "max": high})


def concat(node: OnnxNode):
    present = node.present_inputs()
    return node.emit("Concat", present, {"axis": node.axis(node.attr("axis", 0), present[0].type.rank)})


def gather(node: OnnxNode):
    return node.emit(node.op, node.inputs[:2], {"axis": node.axis(node.attr("axis", 0), len(node.shape()))})


def transpose(node: OnnxNode):
    rank = len(node.shape())
    perm = node.attr("perm") or list(range(rank))[::-1]
    return node.emit("Transpose", [node.input(0)], {"perm": [node.axis(p, rank) for p in perm]})


# -- ops that only reshape ---------------------------------------------------------
def reshape(node: OnnxNode):
    """Reshape: resolves 0 (copy, unless allowzero) and -1 into the full output shape."""
    shape = node.static_ints(1, "shape")
    in_shape = node.shape()
    copy_zeros = not node.attr("allowzero", 0)
    out = [in_shape[i] if d == 0 and copy_zeros and i < len(in_shape) else d
           for i, d in enumerate(shape)]
    if out.count(-1) > 1 or any(d < -1 for d in out):
        raise node.model_error(f"invalid target shape {shape}")
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        total = math.prod(in_shape)
        if known == 0 or total % known:
            raise node.model_error(f"cannot reshape {in_shape} to {shape}")
        out[out.index(-1)] = total // known
    return _reshape(node, out)


def flatten(node: OnnxNode):
    """Flatten -> Reshape to [prod(shape[:axis]), prod(shape[axis:])]."""
    shape = node.shape()
    axis = node.attr("axis", 1)
    axis = axis + len(shape) if axis < 0 else axis
    if not 0 <= axis <= len(shape):
        raise node.model_error(f"axis {node.attr('axis')} is out of range for rank {len(shape)}")
    return _reshape(node, [math.prod(shape[:axis]), math.prod(shape[axis:])])


def squeeze(node: OnnxNode):
    """Squeeze -> Reshape; axes are an attribute before opset 13, an input after, or all 1-dims."""
    shape = node.shape()
    axes = node.attr("axes") if node.opset < 13 else node.static_ints(1, "axes")
    if axes is None:
        axes = [i for i, d in enumerate(shape) if d == 1]
    axes = {node.axis(a, len(shape)) for a in axes}
    if any(shape[a] != 1 for a in axes):
        raise node.model_error(f"cannot squeeze axes {sorted(axes)} of shape {shape}")
    return _reshape(node, [d for i, d in enumerate(shape) if i not in axes])


def unsqueeze(node: OnnxNode):
    """Unsqueeze -> Reshape; axes (attribute < 13, input >= 13) index the output rank."""
    shape = list(node.shape())
    axes = node.attr("axes") if node.opset < 13 else node.static_ints(1, "axes")
    rank = len(shape) + len(axes)
    for axis in sorted(node.axis(a, rank) for a in axes):
        shape.insert(axis, 1)
    return _reshape(node, shape)


def _reshape(node: OnnxNode, shape):
    return node.emit("Reshape", [node.input(0)], {"shape": shape})


# -- ops whose tensor inputs become attributes ----------------------------------------
def split(node: OnnxNode):
    """Split: sizes from the attribute (< 13), the input (>= 13), num_outputs (18), or equal parts."""
    shape = node.shape()
    axis = node.axis(node.attr("axis", 0), len(shape))
    sizes = node.attr("split") if node.opset < 13 else node.static_ints(1, "split")
    dim, count = shape[axis], node.attr("num_outputs", len(node.outputs))
    if not sizes:
        chunk = -(-dim // count) if "num_outputs" in node.attrs else dim // count
        sizes = [chunk] * (count - 1) + [dim - chunk * (count - 1)]
        if "num_outputs" not in node.attrs and dim % count:
            raise node.model_error(f"dimension {dim} does not split evenly into {count} outputs")
    if sum(sizes) != dim or min(sizes) < 0:
        raise node.model_error(f"split sizes {sizes} do not add up to dimension {dim}")
    return node.emit("Split", [node.input(0)], {"axis": axis, "split": sizes})


def slice_(node: OnnxNode):
    """Slice: attributes before opset 10, constant inputs after; bounds clamped as ONNX does."""
    shape = node.shape()
    if node.opset < 10:
        starts, ends = node.attr("starts"), node.attr("ends")
        axes, steps = node.attr("axes"), None
    else:
        starts, ends = node.static_ints(1, "starts"), node.static_ints(2, "ends")
        axes, steps = node.static_ints(3, "axes"), node.static_ints(4, "steps")
    axes = [node.axis(a, len(shape)) for a in (axes or range(len(starts)))]
    steps = steps or [1] * len(starts)
    if len(set(axes)) != len(axes) or not len(starts) == len(ends) == len(axes) == len(steps):
        raise node.model_error("starts, ends, axes and steps must have one entry per distinct axis")
    norm_starts, norm_ends = [], []
    for start, end, axis, step in zip(starts, ends, axes, steps):
        if step == 0:
            raise node.model_error("a Slice step cannot be 0")
        start, end = _slice_bounds(start, end, step, shape[axis])
        norm_starts.append(start)
        norm_ends.append(end)
    return node.emit("Slice", [node.input(0)], {"starts": norm_starts, "ends": norm_ends,
                                                "axes": axes, "steps": steps})


def _slice_bounds(start: int, end: int, step: int, dim: int) -> tuple:
    """ONNX clamping: non-negative start; end -1 with a negative step means "through index 0"."""
    if dim == 0:
        return 0, 0
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        return min(max(start, 0), dim), min(max(end, 0), dim)
    return min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)


def pad(node: OnnxNode):
    """Pad: attributes before opset 11; pads/constant_value/axes (18) inputs after."""
    rank = len(node.shape())
    if node.opset < 11:
        pads, value = node.attr("pads"), node.attr("value", 0.0)
    else:
        pads = node.static_ints(1, "pads")
        constant = node.static(2, "constant_value")
        value = 0.0 if constant is None or constant.size == 0 else float(constant.reshape(-1)[0])
        axes = node.static_ints(3, "axes")
        if axes is not None:
            full = [0] * (2 * rank)
            for i, axis in enumerate(node.axis(a, rank) for a in axes):
                full[axis], full[axis + rank] = pads[i], pads[i + len(axes)]
            pads = full
    mode = node.attr("mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise node.unsupported(f"pad mode {mode!r}")
    if len(pads) != 2 * rank:
        raise node.model_error(f"expected {2 * rank} pads, got {len(pads)}")
    return node.emit("Pad", [node.input(0)], {"pads": pads, "mode": mode, "value": value})


def reduce(node: OnnxNode):
    """Reduce*: axes attribute or input (ReduceSum >= 13, others >= 18); empty = all or no-op."""
    rank = len(node.shape())
    axes_are_input = node.opset >= (13 if node.op == "ReduceSum" else 18)
    axes = node.static_ints(1, "axes") if axes_are_input else node.attr("axes")
    if not axes:
        if node.attr("noop_with_empty_axes", 0):
            return [node.input(0)]
        axes = range(rank)
    axes = sorted({node.axis(a, rank) for a in axes})
    return node.emit(node.op, [node.input(0)], {"axes": axes, "keepdims": node.attr("keepdims", 1)})


def expand(node: OnnxNode):
    """Expand: the attribute is the broadcast output shape."""
    shape = broadcast_shapes(node.shape(), tuple(node.static_ints(1, "shape")))
    return node.emit("Expand", [node.input(0)], {"shape": shape})


def tile(node: OnnxNode):
    return node.emit("Tile", [node.input(0)], {"repeats": node.static_ints(1, "repeats")})


# -- folded at import (no IR op) ----------------------------------------------------------
def shape_of(node: OnnxNode):
    """Shape folds to a constant (opset 15 start/end slice it)."""
    shape = node.shape()
    start, end = node.attr("start", 0), node.attr("end", len(shape))
    return [node.constant(np.array(shape[start:end], np.int64))]


def size_of(node: OnnxNode):
    return [node.constant(np.array(math.prod(node.shape()), np.int64))]


def constant_of_shape(node: OnnxNode):
    value = node.tensor_attr("value", np.zeros(1, np.float32))
    shape = node.static_ints(0, "shape")
    return [node.constant(np.full(shape, value.reshape(-1)[0], value.dtype))]


_CONSTANT_FORMS = {  # attribute -> how to make the array
    "value_float": lambda v: np.array(v, np.float32),
    "value_floats": lambda v: np.array(v, np.float32),
    "value_int": lambda v: np.array(v, np.int64),
    "value_ints": lambda v: np.array(v, np.int64),
}


def constant(node: OnnxNode):
    """Constant in any of its value forms folds to a constant."""
    for key, value in node.attrs.items():
        if key == "value":
            return [node.constant(node.tensor_attr(key))]
        if key == "sparse_value":
            return [node.constant(sparse_to_array(value, f"node {node.name} sparse_value"))]
        if key in _CONSTANT_FORMS:
            return [node.constant(_CONSTANT_FORMS[key](value))]
        if key in ("value_string", "value_strings"):
            raise node.unsupported("string constants")
    raise node.model_error("a Constant needs a value attribute")


def range_(node: OnnxNode):
    """Range folds: count = max(ceil((limit - start) / delta), 0)."""
    start, limit, delta = (node.static(i, name).reshape(()) for i, name in
                           enumerate(("start", "limit", "delta")))
    if delta == 0:
        raise node.model_error("Range delta cannot be 0")
    count = max(math.ceil((float(limit) - float(start)) / float(delta)), 0)
    return [node.constant((start + np.arange(count) * delta).astype(start.dtype))]


CONVERTERS = {
    **{op: same_op(keep) for op, keep in SAME_OP.items()},
    **{op: reduce for op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd")},
    **NN_CONVERTERS,
    **QUANT_CONVERTERS,
    "Identity": alias, "Dropout": dropout, "Cast": cast, "Clip": clip, "Concat": concat,
    "Gather": gather, "GatherElements": gather, "Transpose": transpose,
    "Reshape": reshape, "Flatten": flatten, "Squeeze": squeeze, "Unsqueeze": unsqueeze,
    "Split": split, "Slice": slice_, "Pad": pad, "Expand": expand, "Tile": tile,
    "Shape": shape_of, "Size": size_of, "ConstantOfShape": constant_of_shape,
    "Constant": constant, "Range": range_,
}
