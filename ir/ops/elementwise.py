"""Elementwise ops: unary math, activations, broadcasting binary and variadic ops,
comparisons, logic, Where and Cast."""
from __future__ import annotations

import functools
import math

import numpy as np

from ...errors import ShapeError
from ..registry import REQUIRED, broadcast_infer, broadcast_shapes, register
from ..types import TensorType
from .common import (require_bool, require_float, require_numeric, require_same_dtype,
                     unidirectional_broadcast)


def _checked_unary(check):
    """infer for a unary op whose input must pass `check`; output type = input type."""
    def infer(x, **attrs):
        check(x, "x")
        return x
    return infer


def _as_dtype_of(fn):
    """Wrap a reference so its result keeps the first input's dtype (numpy may promote)."""
    @functools.wraps(fn)
    def wrapped(x, *rest, **attrs):
        with np.errstate(all="ignore"):  # inf/nan results are the defined answer, not an error
            return np.asarray(fn(x, *rest, **attrs)).astype(x.dtype, copy=False)
    return wrapped


_erf = np.frompyfunc(math.erf, 1, 1)


def _sigmoid(x):
    # exp(-|x|) never overflows; both halves of the where are finite
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


# name -> (reference, input check)
_UNARY = {
    "Relu": (lambda x: np.maximum(x, 0), require_numeric),
    "Neg": (np.negative, require_numeric),
    "Abs": (np.abs, require_numeric),
    "Sigmoid": (_sigmoid, require_float),
    "Tanh": (np.tanh, require_float),
    "Erf": (lambda x: _erf(x.astype(np.float64)), require_float),
    "Sqrt": (np.sqrt, require_float),
    "Exp": (np.exp, require_float),
    "Log": (np.log, require_float),
    "Reciprocal": (np.reciprocal, require_float),
    "Floor": (np.floor, require_float),
    "Ceil": (np.ceil, require_float),
    "Not": (np.logical_not, require_bool),
}
for _name, (_fn, _check) in _UNARY.items():
    register(_name, infer=_checked_unary(_check))(_as_dtype_of(_fn))


def _isnan_infer(x):
    require_float(x, "x")
    return TensorType("bool", x.shape)


@register("IsNaN", infer=_isnan_infer)
def isnan(x):
    """True where x is NaN."""
    return np.isnan(x)


@register("LeakyRelu", attrs={"alpha": ("float", 0.01)}, infer=_checked_unary(require_float))
@_as_dtype_of
def leaky_relu(x, alpha):
    """x if x >= 0 else alpha * x."""
    return np.where(x >= 0, x, x * x.dtype.type(alpha))


@register("HardSigmoid", attrs={"alpha": ("float", 0.2), "beta": ("float", 0.5)},
          infer=_checked_unary(require_float))
@_as_dtype_of
def hard_sigmoid(x, alpha, beta):
    """max(0, min(1, alpha*x + beta))."""
    return np.clip(x * x.dtype.type(alpha) + x.dtype.type(beta), 0, 1)


@register("HardSwish", infer=_checked_unary(require_float))
@_as_dtype_of
def hard_swish(x):
    """x * max(0, min(1, x/6 + 0.5))."""
    return x * np.clip(x / x.dtype.type(6) + x.dtype.type(0.5), 0, 1)


@register("Clip", attrs={"min": ("float", -math.inf), "max": ("float", math.inf)},
          infer=_checked_unary(require_numeric))
def clip(x, min, max):
    """Clamp to [min, max]; for integer x the bounds are saturated to the dtype's range."""
    if np.issubdtype(x.dtype, np.integer):
        # in Python ints, so that e.g. int64's range is not rounded through float64
        info = np.iinfo(x.dtype)
        lo = info.min if min == -math.inf else math.ceil(min)
        hi = info.max if max == math.inf else math.floor(max)
        lo, hi = (x.dtype.type(sorted((info.min, bound, info.max))[1]) for bound in (lo, hi))
    else:
        lo, hi = x.dtype.type(min), x.dtype.type(max)
    return np.minimum(np.maximum(x, lo), hi)


def _prelu_infer(x, slope):
    require_same_dtype(x, slope)
    unidirectional_broadcast(x.shape, slope.shape, "slope")
    return x


@register("PRelu", inputs=2, infer=_prelu_infer)
@_as_dtype_of
def prelu(x, slope):
    """x if x >= 0 else slope * x, slope broadcast to x."""
    return np.where(x < 0, x * slope, x)


def _numeric_broadcast_infer(*types, **attrs):
    for i, t in enumerate(types):
        require_numeric(t, f"input {i}")
    return broadcast_infer()(*types)


def _int_div(a, b):
    """Integer division truncating toward zero (C semantics); x/0 gives 0 rather than a crash."""
    with np.errstate(divide="ignore"):
        q = np.floor_divide(a, b)
    inexact = (q * b != a) & ((a < 0) != (b < 0))
    return q + inexact.astype(q.dtype)


def _div(a, b):
    return np.true_divide(a, b) if np.issubdtype(a.dtype, np.floating) else _int_div(a, b)


for _name, _fn in {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": _div}.items():
    register(_name, inputs=2, infer=_numeric_broadcast_infer)(_as_dtype_of(_fn))


def _pow_infer(a, b):
    require_numeric(a, "base")
    require_numeric(b, "exponent")
    return TensorType(a.dtype, broadcast_shapes(a.shape, b.shape))


@register("Pow", inputs=2, infer=_pow_infer)
@_as_dtype_of
def pow_(a, b):
    """a ** b; the result has a's dtype (an integer base with a float or negative exponent goes
    through float64 and truncates, as ONNX Runtime does)."""
    if np.issubdtype(a.dtype, np.integer) and not (np.issubdtype(b.dtype, np.integer) and (b >= 0).all()):
        return np.power(a.astype(np.float64), b.astype(np.float64))
    return np.power(a, b)


def _variadic(fn):
    return lambda *xs: functools.reduce(fn, xs)


for _name, _fn in {"Max": np.maximum, "Min": np.minimum, "Sum": np.add}.items():
    register(_name, inputs=(1, None), infer=_numeric_broadcast_infer)(_as_dtype_of(_variadic(_fn)))


def _mean_infer(*types):
    require_float(types[0], "input 0")
    return broadcast_infer()(*types)


@register("Mean", inputs=(1, None), infer=_mean_infer)
@_as_dtype_of
def mean(*xs):
    """Elementwise mean of the broadcast inputs."""
    return _variadic(np.add)(*xs) / xs[0].dtype.type(len(xs))


_COMPARISONS = {"Equal": np.equal, "Less": np.less, "Greater": np.greater,
                "LessOrEqual": np.less_equal, "GreaterOrEqual": np.greater_equal}
for _name, _fn in _COMPARISONS.items():
    register(_name, inputs=2, infer=broadcast_infer("bool"))(_fn)


def _logic_infer(a, b):
    require_bool(a, "a")
    require_bool(b, "b")
    return broadcast_infer()(a, b)


for _name, _fn in {"And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor}.items():
    register(_name, inputs=2, infer=_logic_infer)(_fn)


def _where_infer(cond, a, b):
    require_bool(cond, "cond")
    require_same_dtype(a, b)
    return TensorType(a.dtype, broadcast_shapes(cond.shape, a.shape, b.shape))


@register("Where", inputs=3, infer=_where_infer)
def where(cond, a, b):
    """a where cond else b, all three broadcast."""
    return np.where(cond, a, b)


def _cast_infer(x, to):
    try:
        dtype = np.dtype(to)
    except TypeError:
        raise ShapeError(f"Cast to unknown dtype {to!r}") from None
    if dtype.kind not in "biuf":
        raise ShapeError(f"Cast to unsupported dtype {dtype.name}")
    return TensorType(dtype.name, x.shape)


@register("Cast", attrs={"to": ("str", REQUIRED)}, infer=_cast_infer)
def cast(x, to):
    """numpy astype: float -> int truncates toward zero."""
    with np.errstate(invalid="ignore"):  # nan/inf -> int is undefined in ONNX too
        return x.astype(to)
