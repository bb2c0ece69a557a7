"""Reductions over explicit, sorted, non-negative axes."""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ..registry import REQUIRED, register
from ..types import TensorType
from .common import reduction_cost, require_axis, require_numeric

_REDUCE_ATTRS = {"axes": ("ints", REQUIRED), "keepdims": ("int", 1)}


def _reduce_infer(x, *, axes, keepdims, allow_bool=False):
    if not allow_bool:
        require_numeric(x, "x")
    if list(axes) != sorted(set(axes)):
        raise ShapeError(f"axes {list(axes)} must be sorted and unique")
    if not axes and x.rank:
        raise ShapeError("axes may be empty only for a rank-0 input (the frontend makes "
                         "'reduce all' explicit)")
    for a in axes:
        require_axis(a, x.rank, "axes entry")
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keepdims or i not in axes)
    return TensorType(x.dtype, shape)


def _identity(dtype, largest: bool):
    """The value an empty Max (largest=False) or Min (largest=True) reduction yields, as ONNX."""
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return largest
    if dt.kind == "f":
        return np.inf if largest else -np.inf
    info = np.iinfo(dt)
    return info.max if largest else info.min


def _reduction(fn, extreme=None):
    def reference(x, *, axes, keepdims):
        kw = {} if extreme is None else {"initial": _identity(x.dtype, extreme == "min")}
        return np.asarray(fn(x, axis=tuple(axes), keepdims=bool(keepdims), **kw)).astype(x.dtype, copy=False)
    reference.__doc__ = f"numpy {fn.__name__} over `axes`, in x's dtype."
    return reference


def _bool_ok_infer(x, *, axes, keepdims):
    return _reduce_infer(x, axes=axes, keepdims=keepdims, allow_bool=True)


for _name, _fn in {"ReduceMean": np.mean, "ReduceSum": np.sum, "ReduceProd": np.prod}.items():
    register(_name, attrs=_REDUCE_ATTRS, infer=_reduce_infer, cost=reduction_cost)(_reduction(_fn))
# Max and Min accept bool (opset 20) and give -inf/+inf (dtype extremes) on empty reductions.
register("ReduceMax", attrs=_REDUCE_ATTRS, infer=_bool_ok_infer, cost=reduction_cost)(_reduction(np.max, "max"))
register("ReduceMin", attrs=_REDUCE_ATTRS, infer=_bool_ok_infer, cost=reduction_cost)(_reduction(np.min, "min"))
