"""Operator axioms for z3: every op evaluated on numpy object arrays of z3 real terms.

Tensors are modelled at a concrete small shape as arrays of z3 `Real` terms, one per
element. Linear and data-movement ops (Add, Mul, MatMul, Conv, Gemm, Transpose,
Reshape, Concat, Split, Slice, Pad, ...) take their meaning from the registry's numpy
reference run on those arrays, i.e. their defining sums and index maps. Ops that are
not polynomial get an axiom here: Relu/Abs/Max as `If` (a Conv's fused Relu too), MaxPool
as a max over windows (padding never wins), BatchNormalization with `rsqrt` an uninterpreted function (the
same term on both sides of a rule), Exp/Tanh/Sigmoid/Erf/Sqrt/Log as uninterpreted
functions. Proofs are therefore over the reals (not IEEE floats) and for all values of
inputs and symbolic constants at the shapes of the rule's examples.
"""
from __future__ import annotations

import functools

import numpy as np
import z3

from ...ir.ops.common import channel_view, sliding_windows, window_output_hw
from ...ir.registry import get_op

_UF = {name: z3.Function(name.lower(), z3.RealSort(), z3.RealSort())
       for name in ("Exp", "Tanh", "Sigmoid", "Erf", "Sqrt", "Log", "Rsqrt")}


def _vec(fn):
    return lambda x, **attrs: np.vectorize(fn, otypes=[object])(x)


def _max(a, b):
    if a is None:
        return b
    return a if b is None else z3.If(a >= b, a, b)


def rsqrt(a):
    """1/sqrt(a) elementwise: numpy for numbers, the uninterpreted `rsqrt` for z3 terms."""
    a = np.asarray(a)
    if a.dtype == object:
        return np.vectorize(lambda e: _UF["Rsqrt"](e), otypes=[object])(a)
    return (1.0 / np.sqrt(a)).astype(a.dtype)


def _batchnorm(x, scale, bias, mean, var, *, epsilon):
    c = [channel_view(v, x.ndim) for v in (scale, bias, mean, var)]
    return (x - c[2]) * rsqrt(c[3] + epsilon) * c[0] + c[1]


def _max_pool(x, *, kernel_shape, strides, pads, dilations, ceil_mode):
    out_hw = window_output_hw(x.shape, kernel_shape, strides, pads, dilations, ceil_mode)
    win = sliding_windows(x, kernel_shape, strides, pads, dilations, out_hw, fill=None)
    flat = win.reshape(win.shape[:4] + (-1,))
    return np.apply_along_axis(lambda w: functools.reduce(_max, w, None), 4, flat)


_relu = _vec(lambda e: z3.If(e > 0, e, 0))


def _conv(*xs, activation="", **attrs):
    """The reference's linear conv (+bias), then the fused activation's axiom."""
    y = get_op("Conv").run(list(xs), {**attrs, "activation": ""})[0]
    return AXIOMS[activation](y) if activation else y


AXIOMS = {
    "Relu": _relu,
    "Conv": _conv,
    "Abs": _vec(lambda e: z3.If(e >= 0, e, -e)),
    "Neg": _vec(lambda e: -e),
    "Div": lambda a, b: np.true_divide(a, b),  # real division (the reference floors for ints)
    "Max": lambda *xs: functools.reduce(np.vectorize(_max, otypes=[object]), xs),
    "BatchNormalization": _batchnorm,
    "MaxPool": _max_pool,
    **{name: _vec(lambda e, f=f: f(e)) for name, f in _UF.items() if name != "Rsqrt"},
}


def symbolic(name: str, shape, positive: bool = False, assumptions=None) -> np.ndarray:
    """An object array of fresh z3 reals `name[i]` (>= 0 added to `assumptions` if positive)."""
    flat = [z3.Real(f"{name}[{i}]") for i in range(int(np.prod(shape, dtype=np.int64)))]
    if positive and assumptions is not None:
        assumptions.extend(e >= 0 for e in flat)
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(shape)


def lift(array) -> np.ndarray:
    """A numeric array as an object array of exact z3 rationals."""
    a = np.asarray(array)
    out = np.empty(a.size, dtype=object)
    out[:] = [z3.RealVal(float(v)) for v in a.reshape(-1)]
    return out.reshape(a.shape)


def run_op(op: str, arrays, attrs: dict) -> list:
    """One op on object arrays: its axiom if it has one, else the numpy reference."""
    arrays = [a if np.asarray(a).dtype == object else lift(a) for a in arrays]
    fn = AXIOMS.get(op)
    out = fn(*arrays, **attrs) if fn else get_op(op).run(arrays, attrs)
    out = list(out) if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(o, dtype=object) for o in out]


class SymValue:
    """A bound tensor in symbolic mode: the real Value's type, producer and name, plus
    `sym` (its z3 terms) and `data` (the z3 terms, for constants only)."""

    def __init__(self, value, sym):
        self.value, self.sym = value, sym
        self.type, self.name = value.type, value.name
        self.producer = getattr(value, "producer", None)
        self.data = sym if value.is_constant else None

    @property
    def is_constant(self):
        return self.data is not None


class SymEmitter:
    """Evaluates rhs terms on z3 arrays instead of building nodes (see pattern.build)."""

    def __init__(self, env_of: dict):
        self.env_of = env_of

    def value(self, x):
        if isinstance(x, SymValue):
            return x.sym
        if isinstance(x, np.ndarray):
            return x if x.dtype == object else lift(x)
        return self.env_of[x.name]

    def op(self, op, inputs, attrs):
        attrs = get_op(op).check_attrs(attrs, op)
        return run_op(op, inputs, attrs)


def evaluate(graph, env: dict) -> dict:
    """z3 terms of every value of `graph`; `env` gives the inputs' and constants' terms."""
    env = dict(env)
    for node in graph.nodes:
        args = [env[v.name] for v in node.inputs]
        for v, out in zip(node.outputs, run_op(node.op, args, node.attrs)):
            env[v.name] = out.reshape(v.type.shape)
    return env


def equivalence_counterexample(lhs, rhs, assumptions, timeout_ms: int = 20_000):
    """None if lhs == rhs elementwise for all values (under `assumptions`), else a
    counterexample dict (variable -> value). Raises TimeoutError when z3 says unknown."""
    pending = []
    for a, b in zip(lhs, rhs):
        if a.shape != b.shape:
            return {"shape": f"{a.shape} vs {b.shape}"}
        for x, y in zip(a.reshape(-1), b.reshape(-1)):
            x, y = z3.RealVal(x) if not z3.is_expr(x) else x, z3.RealVal(y) if not z3.is_expr(y) else y
            d = z3.simplify(x - y, som=True)
            if not (z3.is_rational_value(d) and d.as_fraction() == 0):
                pending.append(x != y)
    if not pending:
        return None
    s = z3.Solver()
    s.set("timeout", timeout_ms)
    s.add(*assumptions)
    s.add(z3.Or(*pending))
    r = s.check()
    if r == z3.unsat:
        return None
    if r == z3.unknown:
        raise TimeoutError(s.reason_unknown())
    model = s.model()
    return {str(d): str(model[d]) for d in sorted(model.decls(), key=str)[:8]}
