"""Quantization parameters: activation scales and zero points, int8 weights, int32 biases and the
fixed-point requantization (multiplier, shift) of QConv/QMatMul.

Two schemes (see README "int8 quantization"):
- default: activations uint8 asymmetric (scale, zero point in 0..255: the u8 x s8 dot-product
  instructions take an unsigned activation operand), weights int8 symmetric per output channel,
  requantization M = s_x * s_w / s_y as multiplier / 2**shift with a 31-bit multiplier;
- power of two: activations int8 symmetric (zero point 0), weights int8 symmetric per tensor,
  every scale a power of two, so M = 2**-shift exactly: multiplier 1, one shift per layer (VTA).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...errors import NnforgeError
from ...ir.ops.quant import fixed_point


@dataclass(frozen=True)
class QParams:
    """How a float tensor is stored in 8 bits: x = (q - zero_point) * scale."""

    scale: float
    zero_point: int
    dtype: str  # "uint8" or "int8"

    def level(self, x: float) -> int:
        """The integer level of the real number x (unclipped)."""
        return int(np.rint(x / np.float32(self.scale))) + self.zero_point


def pow2_ceil(x: float) -> float:
    """The smallest power of two >= x (x > 0)."""
    return 2.0 ** math.ceil(math.log2(x))


def activation_qparams(lo: float, hi: float, power_of_two: bool) -> QParams:
    """QParams covering the calibrated range [lo, hi] (widened to contain 0, so that zero padding
    and ReLU's 0 are exact)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if power_of_two:
        amax = max(-lo, hi)
        return QParams(pow2_ceil(amax / 127) if amax > 0 else 1.0, 0, "int8")
    if hi - lo == 0:
        return QParams(1.0, 0, "uint8")
    scale = float(np.float32((hi - lo) / 255))
    return QParams(scale, int(np.clip(np.rint(-lo / scale), 0, 255)), "uint8")


def quantize_weights(w: np.ndarray, axis: int, power_of_two: bool, bits: int = 8) -> tuple:
    """Symmetric int8 weights: per channel along `axis` (per tensor with power_of_two).

    Args:
        w: float weights.
        axis: the output-channel axis.
        power_of_two: one power-of-two scale for the whole tensor.
        bits: 8 (levels -127..127) or 7 (-63..63, for kernels whose int16 pair sums must not
            saturate).
    Returns:
        (int8 weights, float64 scales of shape [channels]).
    """
    qmax = 2 ** (bits - 1) - 1
    reduce_axes = tuple(i for i in range(w.ndim) if i != axis)
    amax = np.abs(w).max(axis=reduce_axes).astype(np.float64)
    if power_of_two:
        top = float(amax.max())
        scales = np.full_like(amax, pow2_ceil(top / qmax) if top > 0 else 1.0)
    else:
        scales = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32).astype(np.float64)
    view = [1] * w.ndim
    view[axis] = -1
    q = np.clip(np.rint(w / scales.reshape(view)), -qmax, qmax).astype(np.int8)
    return q, scales


def quantize_bias(b: np.ndarray, x_scale: float, w_scales: np.ndarray) -> np.ndarray:
    """int32 bias in accumulator units: round(b / (s_x * s_w[c]))."""
    q = np.rint(b.astype(np.float64) / (x_scale * w_scales))
    if np.abs(q).max(initial=0) >= 2**31:
        raise NnforgeError(f"bias {float(np.abs(b).max()):.3g} does not fit int32 at scale "
                           f"{x_scale * float(w_scales.min()):.3g}")
    return q.astype(np.int32)


def pow2_shift(m: float) -> int:
    """The shift of a power-of-two requantization factor m = 2**-shift (shift >= 0)."""
    shift = -round(math.log2(m))
    if 2.0**-shift != m or shift < 0 or shift > 62:
        raise NnforgeError(f"requantization factor {m!r} is not 2**-shift with 0 <= shift <= 62")
    return shift


def integer_layer(w: np.ndarray, w_axis: int, bias, xp: QParams, out_p: QParams, power_of_two: bool,
                  weight_bits: int = 8) -> tuple:
    """The constants and requantization of a QConv/QMatMul from float weights and the input's
    and output's QParams.

    Args:
        w, w_axis: float weights and their output-channel axis (0 for Conv, 1 for [K, N]).
        bias: float bias [channels] or None.
        xp, out_p: QParams of the input and the output.
        power_of_two: one power-of-two weight scale, multiplier 1 (out_p must be power of two).
        weight_bits: 8 or 7.
    Returns:
        (int8 weights, int32 bias or None, requantization attrs {multiplier, shift,
        x_zero_point, out_zero_point, out_dtype}, the output QParams actually used).
    """
    wq, w_scales = quantize_weights(w, w_axis, power_of_two, weight_bits)
    factors = xp.scale * w_scales / out_p.scale
    if power_of_two:
        if factors[0] > 1:  # the output grid cannot be finer than the accumulator's
            out_p = QParams(xp.scale * float(w_scales[0]), 0, "int8")
            factors = np.ones(1)
        multiplier, shift = [1], [pow2_shift(float(factors[0]))]
    else:
        multiplier, shift = fixed_point(factors)
    bq = None if bias is None else quantize_bias(bias, xp.scale, w_scales)
    return wq, bq, {"multiplier": multiplier, "shift": shift, "x_zero_point": xp.zero_point,
                    "out_zero_point": out_p.zero_point, "out_dtype": out_p.dtype}, out_p


def residual_requant(residual: QParams, out_p: QParams) -> dict:
    """QConv's residual attributes: the residual's zero point and its fixed-point rescaling onto the
    output's scale, s_r / s_y = multiplier / 2**shift (ir/ops/quant.py)."""
    (multiplier,), (shift,) = fixed_point([residual.scale / out_p.scale])
    return {"residual_zero_point": residual.zero_point, "residual_multiplier": multiplier,
            "residual_shift": shift}
