"""Data movement ops: no arithmetic, only copies (cost: zero flops)."""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ..registry import REQUIRED, broadcast_shapes, data_movement_cost, register
from ..types import TensorType
from .common import require_axis, require_len, require_same_dtype


def _movement(name, **kw):
    """register() with the data-movement cost."""
    return register(name, cost=data_movement_cost, **kw)


def _reshape_infer(x, *, shape):
    if any(d < 0 for d in shape):
        raise ShapeError(f"shape {list(shape)} must be fully resolved (no -1)")
    out = TensorType(x.dtype, shape)
    if out.numel != x.numel:
        raise ShapeError(f"cannot reshape {x} ({x.numel} elements) to {list(shape)} "
                         f"({out.numel} elements)")
    return out


@_movement("Reshape", attrs={"shape": ("ints", REQUIRED)}, infer=_reshape_infer)
def reshape(x, *, shape):
    """Same elements, new shape."""
    return x.reshape(shape)


def _transpose_infer(x, *, perm):
    if sorted(perm) != list(range(x.rank)):
        raise ShapeError(f"perm {list(perm)} is not a permutation of the {x.rank} axes of {x}")
    return TensorType(x.dtype, tuple(x.shape[p] for p in perm))


@_movement("Transpose", attrs={"perm": ("ints", REQUIRED)}, infer=_transpose_infer)
def transpose(x, *, perm):
    """Permute the axes."""
    return np.ascontiguousarray(x.transpose(perm))


def _concat_infer(*xs, axis):
    require_same_dtype(*xs)
    require_axis(axis, xs[0].rank)
    for t in xs[1:]:
        if t.rank != xs[0].rank or any(a != b for i, (a, b) in enumerate(zip(t.shape, xs[0].shape))
                                       if i != axis):
            raise ShapeError(f"cannot concatenate {t} with {xs[0]} along axis {axis}")
    shape = list(xs[0].shape)
    shape[axis] = sum(t.shape[axis] for t in xs)
    return TensorType(xs[0].dtype, shape)


@_movement("Concat", inputs=(1, None), attrs={"axis": ("int", REQUIRED)}, infer=_concat_infer)
def concat(*xs, axis):
    """Join along one axis."""
    return np.concatenate(xs, axis=axis)


def _split_infer(x, *, axis, split):
    require_axis(axis, x.rank)
    if not split or min(split) < 0 or sum(split) != x.shape[axis]:
        raise ShapeError(f"split sizes {list(split)} must be non-negative and sum to "
                         f"dimension {axis} of {x}")
    return [TensorType(x.dtype, x.shape[:axis] + (s,) + x.shape[axis + 1:]) for s in split]


@_movement("Split", attrs={"axis": ("int", REQUIRED), "split": ("ints", REQUIRED)},
           infer=_split_infer)
def split(x, *, axis, split):
    """Cut into len(split) pieces of the given sizes along axis."""
    return tuple(np.split(x, np.cumsum(split)[:-1], axis=axis))


def _python_slice(start, end, step) -> slice:
    # the normalized end -1 with a negative step means "through index 0", i.e. Python's None
    return slice(start, None if end < 0 else end, step)


def _slice_infer(x, *, starts, ends, axes, steps):
    n = len(axes)
    for values, what in ((starts, "starts"), (ends, "ends"), (steps, "steps")):
        require_len(values, n, what)
    if len(set(axes)) != n:
        raise ShapeError(f"axes {list(axes)} repeat an axis")
    shape = list(x.shape)
    for a, start, end, step in zip(axes, starts, ends, steps):
        require_axis(a, x.rank, "axes entry")
        if step == 0 or start < 0 or (end < 0 and not (end == -1 and step < 0)):
            raise ShapeError(f"slice {start}:{end}:{step} on axis {a} is not normalized")
        shape[a] = len(range(*_python_slice(start, end, step).indices(x.shape[a])))
    return TensorType(x.dtype, shape)


@_movement("Slice", attrs={k: ("ints", REQUIRED) for k in ("starts", "ends", "axes", "steps")},
           infer=_slice_infer)
def slice_(x, *, starts, ends, axes, steps):
    """x[starts:ends:steps] on each listed axis."""
    index = [slice(None)] * x.ndim
    for a, start, end, step in zip(axes, starts, ends, steps):
        index[a] = _python_slice(start, end, step)
    return np.ascontiguousarray(x[tuple(index)])


def _require_index_dtype(indices):
    if indices.dtype not in ("int32", "int64"):
        raise ShapeError(f"indices must be int32 or int64, got {indices.dtype}")


def _gather_infer(data, indices, *, axis):
    _require_index_dtype(indices)
    require_axis(axis, data.rank)
    return TensorType(data.dtype, data.shape[:axis] + indices.shape + data.shape[axis + 1:])


def _wrapped(indices, size):
    """Negative indices count from the end, as in ONNX."""
    return np.where(indices < 0, indices + size, indices)


@_movement("Gather", inputs=2, attrs={"axis": ("int", 0)}, infer=_gather_infer)
def gather(data, indices, *, axis):
    """Pick slices of data along axis at `indices`."""
    return np.take(data, _wrapped(indices, data.shape[axis]), axis=axis)


def _gather_elements_infer(data, indices, *, axis):
    _require_index_dtype(indices)
    require_axis(axis, data.rank)
    if indices.rank != data.rank or any(i != axis and n > m for i, (n, m)
                                        in enumerate(zip(indices.shape, data.shape))):
        raise ShapeError(f"indices {indices} must have the rank of data {data} and no larger "
                         f"dimensions off axis {axis}")
    return TensorType(data.dtype, indices.shape)


@_movement("GatherElements", inputs=2, attrs={"axis": ("int", 0)}, infer=_gather_elements_infer)
def gather_elements(data, indices, *, axis):
    """out[i..] = data[i.. with index `axis` replaced by indices[i..]]."""
    # off-axis, indices may be smaller than data: only that corner of data is addressed
    corner = tuple(slice(None) if i == axis else slice(0, n) for i, n in enumerate(indices.shape))
    return np.take_along_axis(data[corner], _wrapped(indices, data.shape[axis]), axis=axis)


_PAD_MODES = ("constant", "reflect", "edge", "wrap")  # numpy's names match ONNX's


def _pad_infer(x, *, pads, mode, value):
    require_len(pads, 2 * x.rank, "pads")
    if mode not in _PAD_MODES:
        raise ShapeError(f"unknown pad mode {mode!r} (expected one of {list(_PAD_MODES)})")
    shape = tuple(d + pads[i] + pads[x.rank + i] for i, d in enumerate(x.shape))
    if min(shape, default=0) < 0:
        raise ShapeError(f"negative pads {list(pads)} remove more than all of {x}")
    return TensorType(x.dtype, shape)


@_movement("Pad", attrs={"pads": ("ints", REQUIRED), "mode": ("str", "constant"),
                         "value": ("float", 0.0)}, infer=_pad_infer)
def pad(x, *, pads, mode, value):
    """Pad (positive pads) or crop (negative pads) every axis; begins first, then ends."""
    rank = x.ndim
    begins, ends = pads[:rank], pads[rank:]
    x = x[tuple(slice(-min(b, 0), x.shape[i] + min(e, 0)) for i, (b, e) in enumerate(zip(begins, ends)))]
    widths = [(max(b, 0), max(e, 0)) for b, e in zip(begins, ends)]
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=x.dtype.type(value))
    return np.pad(x, widths, mode=mode)


def _expand_infer(x, *, shape):
    if broadcast_shapes(x.shape, tuple(shape)) != tuple(shape):
        raise ShapeError(f"{x} does not expand to {list(shape)}")
    return TensorType(x.dtype, shape)


@_movement("Expand", attrs={"shape": ("ints", REQUIRED)}, infer=_expand_infer)
def expand(x, *, shape):
    """Broadcast x to `shape` (the output shape)."""
    return np.broadcast_to(x, shape).copy()


def _tile_infer(x, *, repeats):
    require_len(repeats, x.rank, "repeats")
    if min(repeats, default=0) < 0:
        raise ShapeError(f"repeats {list(repeats)} must be non-negative")
    return TensorType(x.dtype, tuple(d * r for d, r in zip(x.shape, repeats)))


@_movement("Tile", attrs={"repeats": ("ints", REQUIRED)}, infer=_tile_infer)
def tile(x, *, repeats):
    """Repeat the whole tensor `repeats[i]` times along axis i."""
    return np.tile(x, repeats)
