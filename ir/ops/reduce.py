"""Reductions over explicit, sorted, non-negative axes."""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ..registry import REQUIRED, register
from ..types import TensorType
from .common import reduction_cost, require_axis, require_numeric

_REDUCE_ATTRS = {"axes": ("ints", REQUIRED), "keepdims": ("int", 1)}


def _reduce_infer(x, *, axes, keepdims):
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


def _reduction(fn):
    def reference(x, *, axes, keepdims):
        return np.asarray(fn(x, axis=tuple(axes), keepdims=bool(keepdims))).astype(x.dtype, copy=False)
    reference.__doc__ = f"numpy {fn.__name__} over `axes`, in x's dtype."
    return reference


for _name, _fn in {"ReduceMean": np.mean, "ReduceSum": np.sum, "ReduceMax": np.max,
                   "ReduceMin": np.min, "ReduceProd": np.prod}.items():
    register(_name, attrs=_REDUCE_ATTRS, infer=_reduce_infer, cost=reduction_cost)(_reduction(_fn))
