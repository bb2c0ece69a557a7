"""Quantized ops: ONNX QuantizeLinear / DequantizeLinear, and nnforge's integer conv and matmul.

QConv and QMatMul are the one integer form every quantized layer is lowered to (by
passes/quantize from a float graph, or by the frontend from QLinearConv / ConvInteger / QDQ).
Their semantics are exact integer arithmetic, defined here and nowhere else:

    acc = sum((x - x_zero_point) * w) + bias          int32 accumulation (wrapping), padding = real 0
    y   = (acc * multiplier + round) >> shift          int64, round = 2**(shift-1) (0 when shift == 0):
                                                       round half up, per output channel
    y   = clip(y + out_zero_point, lo, hi)             lo = out_zero_point with Relu, else the dtype's min

QConv may also take a residual r (int8/uint8, the output's shape; needs the bias input) with its
own zero point and requantization onto the output's scale (one multiplier and shift), added
after the conv's requantization and before the zero point and the clip (so Relu acts on the sum):

    r'  = ((r - residual_zero_point) * residual_multiplier + round) >> residual_shift     int64, half up
    y   = clip(y + r' + out_zero_point, lo, hi)

Each of the two terms is rounded once, so y is within one output step of the float
conv + residual (tests/ir/test_ops.py checks it against that float reference).
Power-of-two scales (what VTA needs) are multiplier == 1 everywhere, one shift, zero points 0.
"""
from __future__ import annotations

import math

import numpy as np

from ...errors import ShapeError
from ..registry import Cost, register
from ..types import TensorType
from .common import require_rank, sliding_windows, window_output_hw

INT8_TYPES = ("int8", "uint8")
_REQUANT_ATTRS = {"multiplier": ("ints", (1,)), "shift": ("ints", (0,)), "x_zero_point": ("int", 0),
                  "out_zero_point": ("int", 0), "out_dtype": ("str", "int8"), "activation": ("str", "")}
# QConv's residual r: its zero point and its requantization onto the output's scale (module doc)
RESIDUAL_ATTRS = {"residual_zero_point": ("int", 0), "residual_multiplier": ("int", 1), "residual_shift": ("int", 0)}


def _wrap32(a: np.ndarray) -> np.ndarray:
    """int64 values wrapped to int32 two's complement (still int64)."""
    return ((a.astype(np.int64) + 2**31) % 2**32) - 2**31


def rounding_term(shift) -> np.ndarray:
    """2**(shift-1), 0 for shift 0 (int64): the half-up rounding term of `>> shift`."""
    shift = np.asarray(shift, np.int64)
    return np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)


def _rounding_shift(v: np.ndarray, multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """(v * multiplier + 2**(shift-1)) >> shift in int64: v * multiplier / 2**shift rounded half up."""
    return (v.astype(np.int64) * multiplier + rounding_term(shift)) >> shift


def rescale_residual(r: np.ndarray, *, residual_zero_point, residual_multiplier, residual_shift) -> np.ndarray:
    """A QConv's residual in output steps: ((r - zero point) * multiplier + round) >> shift (int64)."""
    return _rounding_shift(r.astype(np.int64) - residual_zero_point, np.int64(residual_multiplier),
                           np.int64(residual_shift))


def requantize(acc: np.ndarray, axis: int, *, multiplier, shift, out_zero_point, out_dtype,
               activation, residual=None) -> np.ndarray:
    """int32 accumulators -> int8/uint8 outputs; multiplier/shift per index of `axis` (or one);
    `residual` (int64, acc's shape, already in output steps) is added before the clip."""
    view = [1] * acc.ndim
    view[axis] = -1
    mult = np.asarray(multiplier, np.int64).reshape(view if len(multiplier) > 1 else [1] * acc.ndim)
    sh = np.asarray(shift, np.int64).reshape(view if len(shift) > 1 else [1] * acc.ndim)
    y = _rounding_shift(acc, mult, sh) + out_zero_point
    if residual is not None:
        y = y + residual
    info = np.iinfo(out_dtype)
    lo = max(out_zero_point, info.min) if activation == "Relu" else info.min
    return np.clip(y, lo, info.max).astype(out_dtype)


def fixed_point(m) -> tuple:
    """Requantization (multiplier, shift) lists for real factors m ~= multiplier / 2**shift (31-bit
    multiplier, 0 <= shift <= 62): what the quantize pass and the QLinearConv importer emit.

    Args:
        m: positive real requantization factors s_x * s_w / s_y, one per channel.
    Returns:
        (multipliers, shifts) as lists of ints.
    """
    mults, shifts = [], []
    for v in np.asarray(m, np.float64).reshape(-1):
        if not 0 < v < 2**31:
            raise ShapeError(f"requantization factor {v:.3g} is outside (0, 2**31)")
        _, exp = math.frexp(v)  # v = mantissa * 2**exp, 0.5 <= mantissa < 1
        shift = min(31 - exp, 62)
        if shift < 0:
            raise ShapeError(f"requantization factor {v:.3g} is too large for a 31-bit multiplier")
        mult = int(round(v * 2.0**shift))
        if mult >= 2**31:
            mult, shift = mult >> 1, shift - 1
        mults.append(mult)
        shifts.append(shift)
    return mults, shifts


def _check_requant(x, w, b, channels, multiplier, shift, out_dtype, activation):
    if x.dtype not in INT8_TYPES or w.dtype != "int8":
        raise ShapeError(f"expects x int8/uint8 and w int8, got x {x.dtype}, w {w.dtype}")
    if b is not None and (b.dtype != "int32" or b.shape != (channels,)):
        raise ShapeError(f"bias must be int32[{channels}], got {b.dtype}{list(b.shape)}")
    for name, v in (("multiplier", multiplier), ("shift", shift)):
        if len(v) not in (1, channels):
            raise ShapeError(f"{name} has {len(v)} values; expected 1 or {channels} (one per channel)")
    if any(s < 0 or s > 62 for s in shift):
        raise ShapeError(f"shift values must be in 0..62, got {list(shift)}")
    if out_dtype not in INT8_TYPES or activation not in ("", "Relu"):
        raise ShapeError(f"out_dtype must be int8/uint8 and activation ''/'Relu', "
                         f"got {out_dtype!r}, {activation!r}")


def _check_residual(r, y: TensorType, residual_zero_point, residual_multiplier, residual_shift):
    if r.dtype not in INT8_TYPES or r.shape != y.shape:
        raise ShapeError(f"residual r must be int8/uint8{list(y.shape)} (the output's shape), "
                         f"got {r.dtype}{list(r.shape)}")
    info = np.iinfo(r.dtype)
    if not info.min <= residual_zero_point <= info.max:
        raise ShapeError(f"residual_zero_point {residual_zero_point} is outside {r.dtype}")
    if not 0 <= residual_multiplier < 2**31 or not 0 <= residual_shift <= 62:
        raise ShapeError(f"residual_multiplier must be in 0..2**31-1 and residual_shift in 0..62, got "
                         f"{residual_multiplier}, {residual_shift}")


def _qconv_infer(x, w, b=None, r=None, *, strides, pads, dilations, group, multiplier, shift, out_dtype,
                 activation, residual_zero_point, residual_multiplier, residual_shift, **zero_points):
    require_rank(x, 4, "x")
    require_rank(w, 4, "w")
    if x.shape[1] != w.shape[1] * group or w.shape[0] % group:
        raise ShapeError(f"channel mismatch: x {list(x.shape)}, w {list(w.shape)}, group={group}")
    _check_requant(x, w, b, w.shape[0], multiplier, shift, out_dtype, activation)
    y = TensorType(out_dtype, (x.shape[0], w.shape[0]) + window_output_hw(x.shape, w.shape[2:], strides, pads,
                                                                           dilations))
    if r is not None:
        _check_residual(r, y, residual_zero_point, residual_multiplier, residual_shift)
    return y


def _qconv_cost(ins, outs, *, group, **attrs):
    x, w = ins[0], ins[1]
    flops = 2 * outs[0].numel * (x.shape[1] // group) * w.shape[2] * w.shape[3]
    return Cost(flops, sum(t.nbytes for t in ins), sum(t.nbytes for t in outs))


@register("QConv", inputs=(2, 4), infer=_qconv_infer, cost=_qconv_cost,
          attrs={"strides": ("ints", (1, 1)), "pads": ("ints", (0, 0, 0, 0)), "dilations": ("ints", (1, 1)),
                 "group": ("int", 1), **_REQUANT_ATTRS, **RESIDUAL_ATTRS})
def qconv(x, w, b=None, r=None, *, strides, pads, dilations, group, multiplier, shift, x_zero_point,
          out_zero_point, out_dtype, activation, residual_zero_point, residual_multiplier, residual_shift):
    """Integer 2-D conv (Conv's attributes) with the requantization in the module docstring, plus the
    residual r when given (after the bias b, as Conv's fused residual)."""
    out_hw = window_output_hw(x.shape, w.shape[2:], strides, pads, dilations)
    xs = x.astype(np.int64) - x_zero_point
    windows = sliding_windows(xs, w.shape[2:], strides, pads, dilations, out_hw)
    cin, cout = x.shape[1] // group, w.shape[0] // group
    parts = [np.tensordot(windows[:, g * cin:(g + 1) * cin], w[g * cout:(g + 1) * cout].astype(np.int64),
                          axes=([1, 4, 5], [1, 2, 3])) for g in range(group)]
    acc = _wrap32(np.concatenate(parts, axis=-1).transpose(0, 3, 1, 2))
    if b is not None:
        acc = _wrap32(acc + b.astype(np.int64)[None, :, None, None])
    residual = None if r is None else rescale_residual(
        r, residual_zero_point=residual_zero_point, residual_multiplier=residual_multiplier,
        residual_shift=residual_shift)
    return requantize(acc, 1, multiplier=multiplier, shift=shift, out_zero_point=out_zero_point,
                      out_dtype=out_dtype, activation=activation, residual=residual)


def _qmatmul_infer(x, w, b=None, *, multiplier, shift, out_dtype, activation, **zero_points):
    if x.rank < 2 or w.rank != 2 or x.shape[-1] != w.shape[0]:
        raise ShapeError(f"expects x [..., K] and w [K, N], got {list(x.shape)} and {list(w.shape)}")
    _check_requant(x, w, b, w.shape[1], multiplier, shift, out_dtype, activation)
    return TensorType(out_dtype, x.shape[:-1] + (w.shape[1],))


def _qmatmul_cost(ins, outs, **attrs):
    return Cost(2 * outs[0].numel * ins[1].shape[0], sum(t.nbytes for t in ins), sum(t.nbytes for t in outs))


@register("QMatMul", inputs=(2, 3), infer=_qmatmul_infer, cost=_qmatmul_cost, attrs=dict(_REQUANT_ATTRS))
def qmatmul(x, w, b=None, *, multiplier, shift, x_zero_point, out_zero_point, out_dtype, activation):
    """Integer x [..., K] @ w [K, N] (+ bias [N]) with the requantization in the module docstring
    (per output column N)."""
    acc = _wrap32((x.astype(np.int64) - x_zero_point) @ w.astype(np.int64))
    if b is not None:
        acc = _wrap32(acc + b.astype(np.int64))
    return requantize(acc, acc.ndim - 1, multiplier=multiplier, shift=shift, out_zero_point=out_zero_point,
                      out_dtype=out_dtype, activation=activation)


def _axis_view(v: np.ndarray, x: np.ndarray, axis: int) -> np.ndarray:
    if v.ndim == 0 or v.size == 1:
        return v.reshape(())
    shape = [1] * x.ndim
    shape[axis] = -1
    return v.reshape(shape)


def _check_qparams(x, scale, zp, axis, what):
    if scale.dtype != "float32" or (zp is not None and zp.dtype not in INT8_TYPES + ("int32",)):
        raise ShapeError(f"{what}: scale must be float32 and zero_point int8/uint8/int32, got "
                         f"{scale.dtype}{', ' + zp.dtype if zp is not None else ''}")
    for name, t in (("scale", scale), ("zero_point", zp)):
        if t is not None and t.numel != 1 and (t.rank != 1 or t.shape[0] != x.shape[axis]):
            raise ShapeError(f"{what}: {name} {list(t.shape)} must be a scalar or [{x.shape[axis]}] "
                             f"(axis {axis})")


def _quantize_infer(x, scale, zp=None, *, axis):
    _check_qparams(x, scale, zp, axis, "QuantizeLinear")
    return TensorType(zp.dtype if zp is not None else "uint8", x.shape)


@register("QuantizeLinear", inputs=(2, 3), attrs={"axis": ("int", 1)}, infer=_quantize_infer)
def quantize_linear(x, scale, zp=None, *, axis):
    """ONNX: saturate(round_half_even(x / scale) + zero_point); per-axis when scale is 1-D."""
    dtype = zp.dtype if zp is not None else np.dtype("uint8")
    q = np.rint(x / _axis_view(scale, x, axis))
    if zp is not None:
        q = q + _axis_view(zp, x, axis).astype(np.float64)
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize_infer(x, scale, zp=None, *, axis):
    _check_qparams(x, scale, zp, axis, "DequantizeLinear")
    if x.dtype not in INT8_TYPES + ("int32",):
        raise ShapeError(f"DequantizeLinear: x must be int8/uint8/int32, got {x.dtype}")
    return TensorType("float32", x.shape)


@register("DequantizeLinear", inputs=(2, 3), attrs={"axis": ("int", 1)}, infer=_dequantize_infer)
def dequantize_linear(x, scale, zp=None, *, axis):
    """ONNX: (x - zero_point) * scale, in float32; per-axis when scale is 1-D."""
    xi = x.astype(np.int64)
    if zp is not None:
        xi = xi - _axis_view(zp, x, axis).astype(np.int64)
    return (xi * _axis_view(scale, x, axis)).astype(np.float32)
