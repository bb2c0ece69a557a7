"""Resize: ONNX nearest / linear / cubic interpolation, every coordinate transformation mode.

Interpolation is separable, so the reference resizes one axis at a time, vectorized over
output positions (the logic of onnx.reference's Resize, without antialiasing and with the
region of interest fixed to the whole input).
"""
from __future__ import annotations

import math

import numpy as np

from ...errors import ShapeError
from ..registry import REQUIRED, register
from ..types import TensorType
from .common import require_len

_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
_COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                     "asymmetric", "tf_crop_and_resize")


def _source_coordinates(mode: str, out_len: int, in_len: int, scale: float) -> np.ndarray:
    """Input coordinate of every output position along one axis."""
    y = np.arange(out_len, dtype=np.float64)
    scaled_len = scale * in_len  # ONNX uses the unrounded output length here
    if mode in ("align_corners", "tf_crop_and_resize"):
        if scaled_len == 1:
            return np.full(out_len, 0.0 if mode == "align_corners" else (in_len - 1) / 2)
        return y * (in_len - 1) / (scaled_len - 1)
    if mode == "asymmetric":
        return y / scale
    if mode == "pytorch_half_pixel" and scaled_len == 1:
        return np.full(out_len, -0.5)
    offset = in_len / 2 * (1 - out_len / scaled_len) if mode == "half_pixel_symmetric" else 0.0
    return offset + (y + 0.5) / scale - 0.5


def _nearest_coeffs(ratio, nearest_mode, **_):
    """Weights of the two neighbours (left, right) for each ratio in (0, 1]."""
    pick_right = {"round_prefer_floor": ratio > 0.5, "round_prefer_ceil": ratio >= 0.5,
                  "floor": np.zeros_like(ratio, dtype=bool),
                  "ceil": np.ones_like(ratio, dtype=bool)}[nearest_mode]
    pick_right = pick_right | (ratio == 1)  # an exact source pixel is the right neighbour
    return np.stack([~pick_right, pick_right], axis=-1).astype(np.float64)


def _linear_coeffs(ratio, **_):
    return np.stack([1 - ratio, ratio], axis=-1)


def _cubic_coeffs(ratio, cubic_coeff_a, **_):
    a = cubic_coeff_a

    def near(t):  # |t| <= 1
        return ((a + 2) * t - (a + 3)) * t * t + 1

    def far(t):  # 1 < |t| < 2
        return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a

    return np.stack([far(ratio + 1), near(ratio), near(1 - ratio), far(2 - ratio)], axis=-1)


_COEFFS = {"nearest": _nearest_coeffs, "linear": _linear_coeffs, "cubic": _cubic_coeffs}


def _resize_axis(data, axis, out_len, scale, *, mode, coordinate_transformation_mode,
                 exclude_outside, extrapolation_value, **coeff_attrs):
    """Resize float64 `data` along one axis."""
    in_len = data.shape[axis]
    x = _source_coordinates(coordinate_transformation_mode, out_len, in_len, scale)
    x_floor = np.floor(x)
    # ratio in (0, 1]: an exact integer coordinate counts as the right end of the left interval
    ratio = np.where(x == x_floor, 1.0, x - x_floor)
    coeffs = _COEFFS[mode](ratio, **coeff_attrs)
    taps = coeffs.shape[1]
    # the `taps` (always even) nearest indices to x, ties to the smaller index as onnx.reference
    first = x_floor - taps // 2 + (x != x_floor)
    neighbours = first.astype(np.int64)[:, None] + np.arange(taps)
    if exclude_outside:
        coeffs = np.where((neighbours < 0) | (neighbours >= in_len), 0.0, coeffs)
        total = coeffs.sum(axis=1, keepdims=True)
        coeffs = coeffs / np.where(total == 0, 1.0, total)
    # out-of-range neighbours repeat the edge pixel
    gathered = np.take(data, np.clip(neighbours, 0, in_len - 1), axis=axis)
    weights = coeffs.reshape((1,) * axis + coeffs.shape + (1,) * (data.ndim - axis - 1))
    out = (gathered * weights).sum(axis=axis + 1)
    if coordinate_transformation_mode == "tf_crop_and_resize":
        outside = ((x < 0) | (x > in_len - 1)).reshape((-1,) + (1,) * (data.ndim - axis - 1))
        out = np.where(outside, extrapolation_value, out)
    return out


def _resize_infer(x, *, mode, coordinate_transformation_mode, nearest_mode, scales, sizes, **_):
    require_len(scales, x.rank, "scales")
    require_len(sizes, x.rank, "sizes")
    for value, allowed, what in ((mode, _COEFFS, "mode"),
                                 (coordinate_transformation_mode, _COORDINATE_MODES,
                                  "coordinate_transformation_mode"),
                                 (nearest_mode, _NEAREST_MODES, "nearest_mode")):
        if value not in allowed:
            raise ShapeError(f"unknown {what} {value!r} (expected one of {list(allowed)})")
    if min(scales, default=1.0) <= 0 or min(sizes, default=1) < 1:
        raise ShapeError(f"scales {list(scales)} and sizes {list(sizes)} must be positive")
    return TensorType(x.dtype, sizes)


@register("Resize", infer=_resize_infer,
          attrs={"mode": ("str", "nearest"),
                 "coordinate_transformation_mode": ("str", "half_pixel"),
                 "nearest_mode": ("str", "round_prefer_floor"), "cubic_coeff_a": ("float", -0.75),
                 "exclude_outside": ("int", 0), "extrapolation_value": ("float", 0.0),
                 "scales": ("floats", REQUIRED), "sizes": ("ints", REQUIRED)})
def resize(x, *, scales, sizes, **attrs):
    """Interpolate x to shape `sizes`; source coordinates use `scales` as ONNX does."""
    out = x.astype(np.float64)
    for axis, (scale, size) in enumerate(zip(scales, sizes)):
        if math.isclose(scale, 1.0) and size == out.shape[axis]:
            continue  # identity along this axis (onnx.reference skips it too)
        out = _resize_axis(out, axis, size, scale, **attrs)
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        out = np.clip(np.round(out), info.min, info.max)
    return out.astype(x.dtype)
