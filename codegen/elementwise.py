"""Lowering rules for elementwise ops: unary math and activations, broadcasting binary
and variadic ops, comparisons, logic, Where, Cast, PRelu.

Every op here is one `te.compute` over the output shape whose body is an expression
built from a table row; inputs are read through `load_broadcast` (numpy broadcasting)
and the kernel gets the injective schedule (parallel outer loops, vectorized inner).

float16 is computed in float32 and rounded once at the end, as numpy does. float32
exp/tanh/erf use the polynomial forms below because LLVM turns the `te.exp` family into
one libm call per lane (measured 8-20x slower); float64 keeps the libm calls.
"""
from __future__ import annotations

import math
import operator

import numpy as np
from tvm import te, tirx

from .kernel import LowerNode
from .rules import make_kernel, rule
from .schedule_common import lanes_for, schedule_injective


# -- math building blocks (also used by norm.py) -------------------------------------------
def const(value, dtype: str):
    """A TIR constant of `dtype`."""
    return tirx.const(value, dtype)


def dtype_of(value) -> str:
    """The dtype name of a TIR expression."""
    return str(value.ty.dtype)


def is_float(value) -> bool:
    """Whether a TIR expression has a floating-point dtype."""
    return dtype_of(value).startswith("float")


def nan_max(a, b):
    """max(a, b) that propagates NaN from either side, like numpy.maximum."""
    m = te.max(a, b)
    return tirx.Select(tirx.isnan(a), a, m) if is_float(a) else m


def nan_min(a, b):
    """min(a, b) that propagates NaN from either side, like numpy.minimum."""
    m = te.min(a, b)
    return tirx.Select(tirx.isnan(a), a, m) if is_float(a) else m


def _polynomial(x, coefficients):
    """Horner evaluation; coefficients from the highest power down."""
    acc = const(coefficients[0], dtype_of(x))
    for c in coefficients[1:]:
        acc = acc * x + const(c, dtype_of(x))
    return acc


_EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
             1.6666665459e-1, 5.0000001201e-1)  # Cephes expf, degree 2..7 terms of exp(f)


def exp(x):
    """exp(x). float32: Cephes range reduction, exp(x) = 2^n * p(x - n ln2), in vectorizable
    arithmetic (relative error ~1e-7); inf/NaN as numpy; results below 2.2e-38 flush to 0.
    """
    if dtype_of(x) != "float32":
        return te.exp(x)
    f32 = lambda v: const(v, "float32")  # noqa: E731
    # n in [-125, 128]: 2^(n-1) is a normal float, so 2^n = 2^(n-1) * 2 never needs denormals
    clamped = te.min(te.max(x, f32(-86.6)), f32(88.72283))
    n = te.floor(clamped * f32(1.4426950408889634) + f32(0.5))
    f = clamped - n * f32(0.693359375) - n * f32(-2.12194440e-4)  # ln2 split in two for accuracy
    p = _polynomial(f, _EXP_POLY) * f * f + f + f32(1.0)
    half_two_n = tirx.reinterpret("float32", (n.astype("int32") + 126) << 23)
    y = p * half_two_n * f32(2.0)
    y = tirx.Select(x > f32(88.72283), f32(math.inf), y)
    y = tirx.Select(x < f32(-86.6), f32(0.0), y)
    return tirx.Select(tirx.isnan(x), x, y)


def sigmoid(x):
    """1 / (1 + exp(-x)); exp overflow gives the right limits (0 and 1)."""
    one = const(1.0, dtype_of(x))
    return one / (one + exp(-x))


# Eigen's float32 tanh: x * P(x^2) / Q(x^2) on [-7.9, 7.9], where tanh is +-1 in float32.
_TANH_P = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
           5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
           4.89352455891786e-03)
_TANH_Q = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
           4.89352518554385e-03)
# Eigen's float32 erf: x * P(x^2) / Q(x^2) on [-4, 4], where erf is +-1 in float32.
_ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
          -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
          -1.60960333262415e-02)
_ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
          -7.37332916720468e-03, -1.42647390514189e-02)


def _odd_rational(x, bound: float, p, q):
    c = te.min(te.max(x, const(-bound, dtype_of(x))), const(bound, dtype_of(x)))
    c2 = c * c
    return tirx.Select(tirx.isnan(x), x, c * _polynomial(c2, p) / _polynomial(c2, q))


def tanh(x):
    """tanh(x); float32 by a rational approximation (a few ulp), else libm."""
    if dtype_of(x) != "float32":
        return te.tanh(x)
    return _odd_rational(x, 7.90531110763549805, _TANH_P, _TANH_Q)


def erf(x):
    """erf(x); float32 by a rational approximation (a few ulp), else libm."""
    if dtype_of(x) != "float32":
        return te.erf(x)
    return _odd_rational(x, 4.0, _ERF_P, _ERF_Q)


def _clip(x, lo: float, hi: float):
    """Clamp to [lo, hi] with numpy.clip's NaN propagation; integer x gets the bounds
    rounded inward and saturated to its dtype's range (as the registry reference)."""
    if dtype_of(x).startswith(("int", "uint")):
        info = np.iinfo(dtype_of(x))
        lo = int(np.clip(math.ceil(lo) if math.isfinite(lo) else lo, info.min, info.max))
        hi = int(np.clip(math.floor(hi) if math.isfinite(hi) else hi, info.min, info.max))
    return nan_min(nan_max(x, const(lo, dtype_of(x))), const(hi, dtype_of(x)))


def relu(x):
    """max(x, 0) of a TIR expression (NaN stays NaN, as the reference); the fused conv epilogue uses it too."""
    return tirx.Select(x < const(0, dtype_of(x)), const(0, dtype_of(x)), x)  # NaN stays NaN


def _div(a, b):
    return a / b if is_float(a) else tirx.truncdiv(a, b)


def _pow(a, b):
    """a ** b in a's dtype; an integer base goes through float64 (exact below 2^53)."""
    if is_float(a):
        return te.power(a, b.astype(dtype_of(a)))
    return te.power(a.astype("float64"), b.astype("float64")).astype(dtype_of(a))


def _cast(x, to: str):
    if to == "bool" and dtype_of(x) != "bool":
        return tirx.NE(x, const(0, dtype_of(x)))
    return x.astype(to)


def _xor(a, b):
    # LLVM codegen emits a float compare for NE on bools: compare them as int8
    return tirx.NE(a.astype("int8"), b.astype("int8"))


# op -> expression over the (float16-widened) input values; node attributes are keywords.
ELEMENTWISE = {
    "Relu": relu,
    "Neg": operator.neg,
    "Abs": te.abs,
    "Sigmoid": sigmoid,
    "Tanh": tanh,
    "Erf": erf,
    "Sqrt": te.sqrt,
    "Exp": exp,
    "Log": te.log,
    "Reciprocal": lambda x: const(1, dtype_of(x)) / x,
    "Floor": te.floor,
    "Ceil": te.ceil,
    "Not": tirx.Not,
    "IsNaN": tirx.isnan,
    "LeakyRelu": lambda x, alpha: tirx.Select(x >= const(0, dtype_of(x)), x, x * const(alpha, dtype_of(x))),
    "HardSigmoid": lambda x, alpha, beta: _clip(x * const(alpha, dtype_of(x)) + const(beta, dtype_of(x)), 0, 1),
    "HardSwish": lambda x: x * _clip(x / const(6, dtype_of(x)) + const(0.5, dtype_of(x)), 0, 1),
    "Clip": lambda x, min, max: _clip(x, min, max),
    "PRelu": lambda x, slope: tirx.Select(x < const(0, dtype_of(x)), x * slope, x),
    "Add": operator.add,
    "Sub": operator.sub,
    "Mul": operator.mul,
    "Div": _div,
    "Pow": _pow,
    "Equal": tirx.EQ,
    "Less": tirx.LT,
    "Greater": tirx.GT,
    "LessOrEqual": tirx.LE,
    "GreaterOrEqual": tirx.GE,
    "And": tirx.And,
    "Or": tirx.Or,
    "Xor": _xor,
    "Where": tirx.Select,
    "Cast": _cast,
}

# variadic op -> (pairwise combine, finish(total, n))
VARIADIC = {
    "Max": (nan_max, lambda v, n: v),
    "Min": (nan_min, lambda v, n: v),
    "Sum": (operator.add, lambda v, n: v),
    "Mean": (operator.add, lambda v, n: v / const(n, dtype_of(v))),
}


# -- kernels -------------------------------------------------------------------------------
def load_broadcast(tensor, out_shape, index):
    """tensor's element at output position `index` under numpy broadcasting
    (leading dims aligned away, size-1 dims read at 0)."""
    offset = len(out_shape) - len(tensor.shape)
    return tensor[tuple(0 if int(d) == 1 else index[offset + k] for k, d in enumerate(tensor.shape))]


def widen(value):
    """float16 values are computed in float32 (numpy's float16 ufuncs do the same)."""
    value = value.asobject()  # a PrimExpr, which knows its dtype
    return value.astype("float32") if dtype_of(value) == "float16" else value


def elementwise_kernel(n: LowerNode, body, description: str):
    """One kernel computing `body(*input_values)` at every output position.

    Args:
        n: the node; every input is a run-time kernel argument, broadcast to the output.
        body: expression builder over the widened input values.
        description: the schedule's one-line description.
    Returns:
        a Kernel with the injective schedule.
    """
    out = n.outputs[0]
    inputs = [n.placeholder(i) for i in range(len(n.inputs))]

    def compute(*index):
        return body(*(widen(load_broadcast(t, out.shape, index)) for t in inputs)).astype(out.dtype)

    y = te.compute(out.shape, compute, name=n.op.lower())
    dtypes = [i.type.dtype for i in n.inputs] + [out.dtype]
    return make_kernel(inputs, [y], schedule_injective(lanes_for(n.target, *dtypes)),
                       list(range(len(inputs))), description)


# Small integer powers are multiplications: exact, and no libm call per element.
_POWERS = {1: lambda x: x, 2: lambda x: x * x, 3: lambda x: x * x * x}


@rule("Pow")
def pow_constant_integer_exponent(n: LowerNode):
    """Pow with a float base and a constant exponent whose elements are all 1, 2 or 3."""
    base, exponent = n.inputs
    if not (exponent.is_constant and base.type.dtype.startswith("float") and exponent.data.size):
        return None
    value = exponent.data.flat[0]
    if not (np.all(exponent.data == value) and value in _POWERS):
        return None
    if np.broadcast_shapes(base.type.shape, exponent.type.shape) != base.type.shape:
        return None  # the exponent would widen the output: leave that to the general rule
    node = LowerNode(n.op, n.name, n.attrs, [base], n.outputs, n.target)
    return elementwise_kernel(node, _POWERS[int(value)], f"x**{int(value)} by multiplication, injective")


def _lower_elementwise(n: LowerNode):
    fn = ELEMENTWISE[n.op]
    return elementwise_kernel(n, lambda *xs: fn(*xs, **n.attrs), "injective")


def _lower_variadic(n: LowerNode):
    combine, finish = VARIADIC[n.op]

    def body(*xs):
        total = xs[0]
        for x in xs[1:]:
            total = combine(total, x)
        return finish(total, len(xs))

    return elementwise_kernel(n, body, f"{len(n.inputs)}-input injective")


for _op in ELEMENTWISE:
    rule(_op)(_lower_elementwise)
for _op in VARIADIC:
    rule(_op)(_lower_variadic)
