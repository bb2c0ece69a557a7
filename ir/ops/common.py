"""Checks and helpers shared by the op declarations in ir/ops/."""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ..registry import Cost
from ..types import TensorType


def is_float(dtype: str) -> bool:
    return np.issubdtype(np.dtype(dtype), np.floating)


def is_bool(dtype: str) -> bool:
    return np.dtype(dtype) == np.bool_


def require_float(t: TensorType, what: str = "input"):
    """Raise ShapeError unless `t` has a floating-point dtype."""
    if not is_float(t.dtype):
        raise ShapeError(f"{what} must be floating point, got {t.dtype}")


def require_bool(t: TensorType, what: str = "input"):
    """Raise ShapeError unless `t` is a bool tensor."""
    if not is_bool(t.dtype):
        raise ShapeError(f"{what} must be bool, got {t.dtype}")


def require_numeric(t: TensorType, what: str = "input"):
    """Raise ShapeError for bool tensors (arithmetic on bool is not defined in ONNX)."""
    if is_bool(t.dtype):
        raise ShapeError(f"{what} must be numeric, got bool")


def require_same_dtype(*types: TensorType):
    """Raise ShapeError unless every type has the same dtype."""
    if len({t.dtype for t in types}) > 1:
        raise ShapeError(f"input dtypes differ: {', '.join(t.dtype for t in types)}")


def require_rank(t: TensorType, rank: int, what: str = "input"):
    """Raise ShapeError unless `t` has exactly `rank` dimensions."""
    if t.rank != rank:
        raise ShapeError(f"{what} must have rank {rank}, got {t}")


def require_axis(axis: int, rank: int, what: str = "axis"):
    """Raise ShapeError unless 0 <= axis < rank (normalized axes are non-negative)."""
    if not 0 <= axis < rank:
        raise ShapeError(f"{what}={axis} out of range for rank {rank} (must be in [0, {rank}))")


def require_len(values, n: int, what: str):
    """Raise ShapeError unless the attribute `values` has `n` entries."""
    if len(values) != n:
        raise ShapeError(f"{what} must have {n} entries, got {list(values)}")


def unidirectional_broadcast(target: tuple, shape: tuple, what: str):
    """Raise ShapeError unless `shape` broadcasts to `target` without changing it."""
    try:
        ok = tuple(np.broadcast_shapes(target, shape)) == tuple(target)
    except ValueError:
        ok = False
    if not ok:
        raise ShapeError(f"{what} shape {list(shape)} does not broadcast to {list(target)}")


def channel_view(v: np.ndarray, rank: int) -> np.ndarray:
    """A per-channel vector [C] reshaped to broadcast along axis 1 of a rank-`rank` tensor."""
    return v.reshape((1, -1) + (1,) * (rank - 2))


def reduction_cost(ins, outs, **attrs) -> Cost:
    """One op per input element read (reductions, pools without overlap, normalizations)."""
    return Cost(sum(t.numel for t in ins[:1]), sum(t.nbytes for t in ins),
                sum(t.nbytes for t in outs))


# -- 2-D sliding windows (Conv and the pools) ---------------------------------
def check_window_attrs(x: TensorType, kernel, strides, pads, dilations):
    """Validate the 2-D window attributes of Conv/pools against an [N,C,H,W] input."""
    require_rank(x, 4, "x")
    require_len(kernel, 2, "kernel_shape")
    require_len(strides, 2, "strides")
    require_len(pads, 4, "pads")
    require_len(dilations, 2, "dilations")
    if min(kernel) < 1 or min(strides) < 1 or min(dilations) < 1:
        raise ShapeError(f"kernel {list(kernel)}, strides {list(strides)} and dilations "
                         f"{list(dilations)} must be positive")
    if min(pads) < 0:
        raise ShapeError(f"pads {list(pads)} must be non-negative")


def window_output_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int,
                       dilation: int, ceil_mode: int = 0) -> int:
    """Output length of a sliding window along one axis (ONNX/PyTorch rule).

    With ceil_mode a last window that would start inside the end padding only is dropped.
    Raises ShapeError when the (dilated) window does not fit the padded input.
    """
    span = (kernel - 1) * dilation + 1
    room = size + pad_begin + pad_end - span
    if room < 0:
        raise ShapeError(f"window of extent {span} does not fit input length {size} "
                         f"padded by ({pad_begin}, {pad_end})")
    out = (-(-room // stride) if ceil_mode else room // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out


def window_output_hw(x_shape, kernel, strides, pads, dilations, ceil_mode=0) -> tuple:
    """(OH, OW) of a 2-D window op with ONNX pads (top, left, bottom, right)."""
    return tuple(window_output_size(x_shape[2 + i], kernel[i], strides[i], pads[i], pads[2 + i],
                                    dilations[i], ceil_mode) for i in range(2))


def sliding_windows(x: np.ndarray, kernel, strides, pads, dilations, out_hw,
                    fill=0) -> np.ndarray:
    """A [N, C, OH, OW, kH, kW] view of the windows of an [N,C,H,W] array.

    Args:
        x: the input.
        kernel, strides, pads, dilations: ONNX window attributes (pads = top, left, bottom, right).
        out_hw: (OH, OW) from `window_output_hw`; the end is padded further if the ceil_mode
            overhang needs it.
        fill: value of the padding.
    Returns:
        a strided view (no copy besides the padding).
    """
    widths = [(0, 0), (0, 0)]
    for i in range(2):
        span = (kernel[i] - 1) * dilations[i] + 1
        need = (out_hw[i] - 1) * strides[i] + span
        begin, end = pads[i], pads[2 + i]
        widths.append((begin, max(end, need - x.shape[2 + i] - begin)))
    xp = np.pad(x, widths, constant_values=fill) if any(map(any, widths)) else x
    spans = [(kernel[i] - 1) * dilations[i] + 1 for i in range(2)]
    view = np.lib.stride_tricks.sliding_window_view(xp, spans, axis=(2, 3))
    return view[:, :, :(out_hw[0] - 1) * strides[0] + 1:strides[0],
                :(out_hw[1] - 1) * strides[1] + 1:strides[1], ::dilations[0], ::dilations[1]]
