"""Pooling ops: MaxPool, AveragePool (2-D, with ceil_mode and dilations) and the global pools."""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ..registry import REQUIRED, Cost, register
from ..types import TensorType
from .common import (check_window_attrs, reduction_cost, require_float, sliding_windows,
                     window_output_hw)

_POOL_ATTRS = {"kernel_shape": ("ints", REQUIRED), "strides": ("ints", (1, 1)),
               "pads": ("ints", (0, 0, 0, 0)), "dilations": ("ints", (1, 1)),
               "ceil_mode": ("int", 0)}


def _pool_infer(x, *, kernel_shape, strides, pads, dilations, ceil_mode, **attrs):
    check_window_attrs(x, kernel_shape, strides, pads, dilations)
    spans = [(kernel_shape[i] - 1) * dilations[i] + 1 for i in range(2)]
    if any(pads[i] >= spans[i % 2] for i in range(4)):
        # a window made only of padding has no defined value
        raise ShapeError(f"pads {list(pads)} must be smaller than the dilated kernel extent {spans}")
    return TensorType(x.dtype, x.shape[:2] + window_output_hw(x.shape, kernel_shape, strides, pads,
                                                               dilations, ceil_mode))


def _pool_cost(ins, outs, *, kernel_shape, **attrs):
    return Cost(outs[0].numel * kernel_shape[0] * kernel_shape[1], ins[0].nbytes, outs[0].nbytes)


def _lowest(dtype):
    return -np.inf if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).min


@register("MaxPool", attrs=_POOL_ATTRS, infer=_pool_infer, cost=_pool_cost)
def max_pool(x, *, kernel_shape, strides, pads, dilations, ceil_mode):
    """Max over each window; padding never wins."""
    out_hw = window_output_hw(x.shape, kernel_shape, strides, pads, dilations, ceil_mode)
    windows = sliding_windows(x, kernel_shape, strides, pads, dilations, out_hw,
                              fill=_lowest(x.dtype))
    return windows.max(axis=(4, 5))


def _average_pool_infer(x, **attrs):
    require_float(x, "x")
    return _pool_infer(x, **attrs)


@register("AveragePool", attrs={**_POOL_ATTRS, "count_include_pad": ("int", 0)},
          infer=_average_pool_infer, cost=_pool_cost)
def average_pool(x, *, kernel_shape, strides, pads, dilations, ceil_mode, count_include_pad):
    """Mean over each window. The divisor counts the real pixels, plus the explicit pads
    iff count_include_pad; the ceil_mode overhang never counts."""
    out_hw = window_output_hw(x.shape, kernel_shape, strides, pads, dilations, ceil_mode)
    sums = sliding_windows(x, kernel_shape, strides, pads, dilations, out_hw).sum(axis=(4, 5))
    # the divisor is the same window sum over a mask of the positions that count
    h, w = x.shape[2:]
    if count_include_pad:
        counted = np.ones((1, 1, h + pads[0] + pads[2], w + pads[1] + pads[3]))
        counts = sliding_windows(counted, kernel_shape, strides, (0, 0, 0, 0), dilations, out_hw)
    else:
        counted = np.ones((1, 1, h, w))
        counts = sliding_windows(counted, kernel_shape, strides, pads, dilations, out_hw)
    return (sums / counts.sum(axis=(4, 5))).astype(x.dtype)


def _global_pool_infer(x):
    if x.rank < 3:
        raise ShapeError(f"x must be [N,C,spatial...], got {x}")
    return TensorType(x.dtype, x.shape[:2] + (1,) * (x.rank - 2))


def _global_axes(x):
    return tuple(range(2, x.ndim))


@register("GlobalAveragePool", infer=_global_pool_infer, cost=reduction_cost)
def global_average_pool(x):
    """Mean over all spatial axes, kept as size 1."""
    return x.mean(axis=_global_axes(x), keepdims=True).astype(x.dtype, copy=False)


@register("GlobalMaxPool", infer=_global_pool_infer, cost=reduction_cost)
def global_max_pool(x):
    """Max over all spatial axes, kept as size 1."""
    return x.max(axis=_global_axes(x), keepdims=True)
