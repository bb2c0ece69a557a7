"""ONNX -> IR converters for quantized models: QuantizeLinear / DequantizeLinear (QDQ models),
QLinearConv / QLinearMatMul (onto QConv / QMatMul) and ConvInteger / MatMulInteger (exact int32).

QLinearConv and QLinearMatMul with constant weights become the IR's integer layers: weights are
made int8 (w - w_zero_point), and the float requantization factor x_scale * w_scale / y_scale is
turned into a fixed-point multiplier and shift. ONNX Runtime multiplies by the float factor and
rounds half to even, so the two can differ by 1 in the last bit where the product lands next to
a .5 (tests/frontend/test_onnx_quant.py measures it). ConvInteger / MatMulInteger produce the
exact int32 accumulators: Cast to int32, subtract the zero points, then an int32 Conv / MatMul.
"""
from __future__ import annotations

import numpy as np

from ..ir.ops.quant import fixed_point
from .onnx_node import OnnxNode
from .onnx_ops_nn import _spatial_2d, _window_attrs

def _qdq(node: OnnxNode):
    """QuantizeLinear / DequantizeLinear: the IR ops of the same name (int8/uint8 zero points)."""
    if node.attr("block_size", 0):
        raise node.unsupported("blocked quantization (block_size)")
    zp = node.input(2)
    allowed = ("int8", "uint8") + (("int32",) if node.op == "DequantizeLinear" else ())
    if zp is not None and zp.type.dtype not in allowed:
        raise node.unsupported(f"zero point of type {zp.type.dtype} (supported: {', '.join(allowed)})")
    per_axis = node.input(1).type.numel > 1  # the axis means nothing for a per-tensor scale
    axis = node.axis(node.attr("axis", 1), len(node.shape())) if per_axis else 0
    return node.emit(node.op, node.present_inputs(), {"axis": axis})


def _scalar(node: OnnxNode, i: int, what: str, default=0) -> np.ndarray:
    """Constant input i as a 0-d array (`default` when omitted); UnsupportedError unless it is
    one value."""
    a = node.static(i, what)
    if a is None:
        return np.array(default)
    if a.size != 1:
        raise node.unsupported(f"{what} must be one value (per-tensor), got shape {list(a.shape)}")
    return a.reshape(())


def _int8_weights(node: OnnxNode, w: np.ndarray, zp: np.ndarray | None, axis: int) -> np.ndarray:
    """w - zero_point as int8 (uint8 weights with zero point 128 fit; others must already)."""
    if zp is None:
        zp = np.zeros((), w.dtype)
    view = [1] * w.ndim
    if zp.size > 1:
        view[axis] = -1
    shifted = w.astype(np.int32) - zp.astype(np.int32).reshape(view if zp.size > 1 else ())
    if shifted.min(initial=0) < -128 or shifted.max(initial=0) > 127:
        raise node.unsupported("weights minus their zero point do not fit int8 "
                               f"(range {shifted.min()}..{shifted.max()})")
    return shifted.astype(np.int8)


def _requant_attrs(node: OnnxNode, x_scale, x_zp, w_scale, y_scale, y_zp, channels: int) -> dict:
    factor = (np.float64(x_scale) * np.broadcast_to(w_scale.astype(np.float64).reshape(-1), (channels,))
              / np.float64(y_scale))
    mult, shift = fixed_point(factor if w_scale.size > 1 else factor[:1])
    return {"multiplier": mult, "shift": shift, "x_zero_point": int(x_zp), "out_zero_point": int(y_zp),
            "out_dtype": y_zp.dtype.name, "activation": ""}


def qlinear_conv(node: OnnxNode):
    """QLinearConv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, [B]) -> QConv."""
    _spatial_2d(node)
    w = node.static(3, "w")
    x_scale, x_zp = _scalar(node, 1, "x_scale"), _scalar(node, 2, "x_zero_point")
    y_scale, y_zp = _scalar(node, 6, "y_scale"), _scalar(node, 7, "y_zero_point")
    wq = _int8_weights(node, w, node.static(5, "w_zero_point"), axis=0)
    attrs = {**_window_attrs(node, w.shape[2:]), "group": node.attr("group", 1),
             **_requant_attrs(node, x_scale, x_zp, node.static(4, "w_scale"), y_scale, y_zp, w.shape[0])}
    inputs = [node.input(0), node.helper_constant(wq, "w")]
    if node.input(8) is not None:
        inputs.append(node.input(8))
    return node.emit("QConv", inputs, attrs)


def qlinear_matmul(node: OnnxNode):
    """QLinearMatMul -> QMatMul for a constant 2-D b; otherwise Dequantize, MatMul, Quantize."""
    b = node.input(3)
    if not (b.is_constant and b.type.rank == 2):
        deq = [node.emit("DequantizeLinear", node.inputs[i:i + 3], {"axis": 1}, final=False)[0] for i in (0, 3)]
        y = node.emit("MatMul", deq, final=False)[0]
        return node.emit("QuantizeLinear", [y, node.input(6), node.input(7)], {"axis": 1})
    a_scale, a_zp = _scalar(node, 1, "a_scale"), _scalar(node, 2, "a_zero_point")
    y_scale, y_zp = _scalar(node, 6, "y_scale"), _scalar(node, 7, "y_zero_point")
    wq = _int8_weights(node, b.data, node.static(5, "b_zero_point"), axis=1)
    attrs = _requant_attrs(node, a_scale, a_zp, node.static(4, "b_scale"), y_scale, y_zp, b.type.shape[1])
    return node.emit("QMatMul", [node.input(0), node.helper_constant(wq, "w")], attrs)


def _minus_zero_point(node: OnnxNode, i: int, zp_index: int, row_axis: int | None = None):
    """Input i cast to int32 minus its zero point (input zp_index; per row of axis `row_axis`
    when it has more than one value)."""
    x = node.emit("Cast", [node.input(i)], {"to": "int32"}, final=False)[0]
    zp = node.static(zp_index, "zero point") if node.input(zp_index) is not None else None
    if zp is None or not zp.any():
        return x
    zp = zp.astype(np.int32)
    if zp.size > 1 and row_axis is not None:
        zp = zp.reshape((-1,) + (1,) * (x.type.rank - 1 - row_axis))
    return node.emit("Sub", [x, node.helper_constant(zp, "zero_point")], final=False)[0]


def conv_integer(node: OnnxNode):
    """ConvInteger -> int32 Conv of (x - x_zp) and (w - w_zp): padding is a real 0, as in ORT."""
    _spatial_2d(node)
    w = node.static(1, "w")
    w_zp = node.static(3, "w_zero_point")
    view = (-1, 1, 1, 1) if w_zp is not None and w_zp.size > 1 else ()
    w32 = w.astype(np.int32) - (w_zp.astype(np.int32).reshape(view) if w_zp is not None else 0)
    attrs = {**_window_attrs(node, w.shape[2:]), "group": node.attr("group", 1)}
    return node.emit("Conv", [_minus_zero_point(node, 0, 2), node.helper_constant(w32, "w")], attrs)


def matmul_integer(node: OnnxNode):
    """MatMulInteger -> int32 MatMul of (a - a_zp) and (b - b_zp); a_zp may be per row."""
    a = _minus_zero_point(node, 0, 2, row_axis=len(node.shape(0)) - 2)
    return node.emit("MatMul", [a, _minus_zero_point(node, 1, 3)])


QUANT_CONVERTERS = {
    "QuantizeLinear": _qdq, "DequantizeLinear": _qdq, "QLinearConv": qlinear_conv,
    "QLinearMatMul": qlinear_matmul, "ConvInteger": conv_integer, "MatMulInteger": matmul_integer,
}
