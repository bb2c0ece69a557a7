"""Resize: ONNX nearest / linear / cubic interpolation, every coordinate transformation mode.

Interpolation is separable, so the reference resizes one axis at a time, vectorized over
output positions (the logic of onnx.reference's Resize, without antialiasing). The
per-axis taps (`axis_taps`) depend only on shapes and attributes; the CPU kernel
(codegen/resize.py) uses the same ones as constant tables.
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


def _source_coordinates(mode: str, out_len: int, in_len: int, scale: float, roi) -> np.ndarray:
    """Input coordinate of every output position along one axis; `roi` is the axis's
    normalized (start, end) crop, used by tf_crop_and_resize only."""
    y = np.arange(out_len, dtype=np.float64)
    scaled_len = scale * in_len  # ONNX uses the unrounded output length here
    if mode == "tf_crop_and_resize":
        start, end = roi
        span = (np.full(out_len, (end - start) * (in_len - 1) / 2) if scaled_len == 1 else
                y * (end - start) * (in_len - 1) / (scaled_len - 1))  # onnx.reference's order
        return span + start * (in_len - 1)
    if mode == "align_corners":
        return np.zeros(out_len) if scaled_len == 1 else y * (in_len - 1) / (scaled_len - 1)
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


def axis_roi(attrs, axis: int, rank: int) -> tuple:
    """The (start, end) crop of one axis; the whole axis when `roi` is empty."""
    roi = attrs["roi"]
    return (roi[axis], roi[rank + axis]) if roi else (0.0, 1.0)


def resized_axes(attrs, in_shape, out_shape) -> list:
    """The axes that are resampled (the reference skips exact identities, as onnx.reference)."""
    rank = len(in_shape)
    return [a for a, (i, o) in enumerate(zip(in_shape, out_shape))
            if i != o or not math.isclose(attrs["scales"][a], 1.0)
            or not all(math.isclose(r, w) for r, w in zip(axis_roi(attrs, a, rank), (0.0, 1.0)))]


def axis_taps(attrs, axis: int, rank: int, in_len: int, out_len: int) -> tuple:
    """How one axis is resampled: every output position is a weighted sum of `taps` inputs.

    Args:
        attrs: the Resize attributes.
        axis, rank: the axis and the input rank.
        in_len, out_len: its input and output length.
    Returns:
        (positions [out_len, taps] int64, clamped into the input; weights [out_len, taps]
        float64; outside [out_len] bool where tf_crop_and_resize extrapolates, else None).
    """
    mode = attrs["coordinate_transformation_mode"]
    x = _source_coordinates(mode, out_len, in_len, attrs["scales"][axis], axis_roi(attrs, axis, rank))
    x_floor = np.floor(x)
    # ratio in (0, 1]: an exact integer coordinate counts as the right end of the left interval
    ratio = np.where(x == x_floor, 1.0, x - x_floor)
    weights = _COEFFS[attrs["mode"]](ratio, **attrs)
    taps = weights.shape[1]
    # the `taps` (always even) nearest indices to x, ties to the smaller index as onnx.reference
    first = x_floor - taps // 2 + (x != x_floor)
    positions = first.astype(np.int64)[:, None] + np.arange(taps)
    if attrs["exclude_outside"]:
        weights = np.where((positions < 0) | (positions >= in_len), 0.0, weights)
        total = weights.sum(axis=1, keepdims=True)
        weights = weights / np.where(total == 0, 1.0, total)
    outside = (x < 0) | (x > in_len - 1) if mode == "tf_crop_and_resize" else None
    # out-of-range neighbours repeat the edge pixel
    return np.clip(positions, 0, in_len - 1), weights, outside


def _resize_axis(data, axis, out_len, attrs):
    """Resize float64 `data` along one axis."""
    positions, weights, outside = axis_taps(attrs, axis, data.ndim, data.shape[axis], out_len)
    gathered = np.take(data, positions, axis=axis)
    weights = weights.reshape((1,) * axis + weights.shape + (1,) * (data.ndim - axis - 1))
    out = (gathered * weights).sum(axis=axis + 1)
    if outside is not None:
        out = np.where(outside.reshape((-1,) + (1,) * (data.ndim - axis - 1)),
                       attrs["extrapolation_value"], out)
    return out


def _resize_infer(x, *, mode, coordinate_transformation_mode, nearest_mode, scales, sizes, roi, **_):
    require_len(scales, x.rank, "scales")
    require_len(sizes, x.rank, "sizes")
    if roi and (len(roi) != 2 * x.rank or coordinate_transformation_mode != "tf_crop_and_resize"):
        raise ShapeError(f"roi {list(roi)} must be empty, or have 2*rank = {2 * x.rank} entries "
                         f"with coordinate_transformation_mode 'tf_crop_and_resize'")
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
                 "scales": ("floats", REQUIRED), "sizes": ("ints", REQUIRED), "roi": ("floats", ())})
def resize(x, **attrs):
    """Interpolate x to shape `sizes`; source coordinates use `scales` (and, for
    tf_crop_and_resize, `roi`) as ONNX does."""
    out = x.astype(np.float64)
    for axis in resized_axes(attrs, x.shape, attrs["sizes"]):
        out = _resize_axis(out, axis, attrs["sizes"][axis], attrs)
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        out = np.clip(np.round(out), info.min, info.max)
    return out.astype(x.dtype)
