"""Elementwise kernels (codegen/elementwise.py) against the registry's numpy references."""
import math

import numpy as np
import pytest

from kernel_harness import Const, check_against_reference, compile_kernel, run_kernel

RNG = np.random.default_rng(0)
FLOATS = ("float32", "float64", "float16")
# odd sizes, a scalar, a shape whose fused row is not a multiple of the lanes, and one big
# enough to be parallel (>= PARALLEL_GRAIN) with a 56-wide innermost row
SHAPES = ((), (7,), (2, 3, 7, 5), (3, 1, 17), (2, 16, 9, 56))


def randn(shape, dtype, scale=3.0):
    return (RNG.standard_normal(shape) * scale).astype(dtype)


def with_specials(x):
    """x with NaN, +-inf and +-0 in its first elements (floats only)."""
    x = x.copy()
    flat = x.reshape(-1)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], x.dtype)[:flat.size]
    flat[:specials.size] = specials
    return x


# op -> (attrs, input maker(shape, dtype))
UNARY_FLOAT = {
    "Relu": ({}, randn),
    "Neg": ({}, randn),
    "Abs": ({}, randn),
    "Sigmoid": ({}, lambda s, d: randn(s, d, 8)),
    "Tanh": ({}, lambda s, d: randn(s, d, 4)),
    "Erf": ({}, lambda s, d: randn(s, d, 2)),
    "Exp": ({}, lambda s, d: randn(s, d, 4)),
    "Sqrt": ({}, lambda s, d: np.abs(randn(s, d))),
    "Log": ({}, lambda s, d: np.abs(randn(s, d)) + np.asarray(0.01, d)),
    "Reciprocal": ({}, lambda s, d: randn(s, d) + np.asarray(0.5, d)),
    "Floor": ({}, randn),
    "Ceil": ({}, randn),
    "IsNaN": ({}, lambda s, d: with_specials(randn(s, d))),
    "LeakyRelu": ({"alpha": 0.1}, randn),
    "HardSigmoid": ({"alpha": 0.3, "beta": 0.4}, randn),
    "HardSwish": ({}, randn),
    "Clip": ({"min": -1.5, "max": 2.0}, randn),
}


@pytest.mark.parametrize("op", sorted(UNARY_FLOAT))
@pytest.mark.parametrize("dtype", FLOATS)
def test_unary_float(op, dtype):
    attrs, make = UNARY_FLOAT[op]
    for shape in SHAPES:
        check_against_reference(op, attrs, [make(shape, dtype)])


@pytest.mark.parametrize("op", ["Exp", "Sigmoid", "Tanh", "Erf", "Relu", "Clip", "Abs", "Floor"])
def test_float32_special_values(op):
    """NaN propagates; infinities and overflow give numpy's limits."""
    x = with_specials(randn((4, 33), "float32", 60))
    check_against_reference(op, UNARY_FLOAT[op][0], [x])


def test_exp_range_is_accurate_to_float32():
    """The polynomial exp over the whole float32 range, incl. overflow and underflow edges."""
    x = np.concatenate([np.linspace(-87, 88.7, 20001, dtype="float32"),
                        np.array([88.72, 88.73, -86.0, -90.0, -200.0, 200.0], "float32")])
    out, = run_kernel("Exp", {}, [x])
    ref = np.exp(x.astype(np.float64))
    rel = np.abs(out - ref) / np.maximum(ref, np.finfo(np.float32).tiny)
    representable = (ref > 1e-37) & (ref <= np.finfo(np.float32).max)
    assert rel[representable].max() < 4e-7
    assert np.isinf(out[ref > np.finfo(np.float32).max]).all()


@pytest.mark.parametrize("op,dtype", [("Relu", "int32"), ("Neg", "int64"), ("Abs", "int8"),
                                      ("Clip", "uint8"), ("Clip", "int32")])
def test_unary_integer(op, dtype):
    info = np.iinfo(dtype)
    x = RNG.integers(max(info.min + 1, -100), min(info.max, 200), (3, 5, 11)).astype(dtype)
    attrs = {"min": 7.5, "max": 1e20} if op == "Clip" else {}
    check_against_reference(op, attrs, [x])


def test_clip_integer_defaults_saturate():
    x = RNG.integers(-128, 128, (50,)).astype("int8")
    check_against_reference("Clip", {"min": -math.inf, "max": 3.2}, [x])


def test_not():
    check_against_reference("Not", {}, [RNG.random((5, 33)) > 0.5])


BINARY = ("Add", "Sub", "Mul", "Div", "Pow", "Equal", "Less", "Greater", "LessOrEqual",
          "GreaterOrEqual")
BROADCASTS = (((2, 3, 7, 5), (2, 3, 7, 5)), ((2, 3, 7, 5), ()), ((5,), (2, 3, 1, 5)),
              ((3, 1, 5), (4, 1)), ((1, 64, 9, 56), (64, 1, 1)))


@pytest.mark.parametrize("op", BINARY)
@pytest.mark.parametrize("dtype", ("float32", "float16"))
def test_binary_broadcasting(op, dtype):
    for sa, sb in BROADCASTS:
        a, b = randn(sa, dtype), randn(sb, dtype)
        if op == "Pow":
            a = np.abs(a) + np.asarray(0.5, dtype)
            b = (b / np.asarray(3, dtype)).astype(dtype)
        if op in ("Equal", "LessOrEqual", "GreaterOrEqual"):
            b = np.broadcast_to(a, np.broadcast_shapes(sa, sb))[(0,) * len(sb)] if sb == () else b
        check_against_reference(op, {}, [a, b], rtol=1e-2 if op == "Pow" and dtype == "float16" else None)


@pytest.mark.parametrize("op", ("Add", "Sub", "Mul", "Div", "Equal", "Less", "Greater"))
@pytest.mark.parametrize("dtype", ("int64", "int32", "int8", "uint8", "float64"))
def test_binary_dtypes(op, dtype):
    a = RNG.integers(-50, 50, (3, 4, 9)).astype(dtype) if dtype != "uint8" else \
        RNG.integers(100, 200, (3, 4, 9)).astype(dtype)
    b = RNG.integers(1, 9, (4, 1)).astype(dtype)
    if dtype != "uint8":
        b = b * np.where(RNG.random((4, 1)) < 0.5, -1, 1).astype(dtype)
    check_against_reference(op, {}, [a, b])


def test_integer_div_truncates_toward_zero():
    a = np.array([7, -7, 7, -7, 6, -6, 0], "int32")
    b = np.array([2, 2, -2, -2, 3, -3, 5], "int32")
    out, = run_kernel("Div", {}, [a, b])
    assert out.tolist() == [3, -3, -3, 3, 2, 2, 0]


@pytest.mark.parametrize("base,exponent", [("float32", "int64"), ("float32", "int32"),
                                           ("int32", "int32"), ("int64", "float32"),
                                           ("float64", "float32")])
def test_pow_mixed_dtypes(base, exponent):
    a = RNG.integers(-4, 5, (3, 7)).astype(base)
    b = RNG.integers(0, 4, (7,)).astype(exponent)
    check_against_reference("Pow", {}, [a, b])


@pytest.mark.parametrize("value", [2.0, 3.0, 2.5])
def test_pow_constant_exponent(value):
    a = randn((4, 37), "float32")
    exponent = np.full((37,), value, "float32")
    if value == 2.5:
        a = np.abs(a)
    kernel = compile_kernel("Pow", {}, [a, Const(exponent)]).kernel
    assert ("by multiplication" in kernel.schedule) == (value != 2.5)
    check_against_reference("Pow", {}, [a, Const(exponent)])


@pytest.mark.parametrize("op", ("And", "Or", "Xor"))
def test_logic(op):
    check_against_reference(op, {}, [RNG.random((3, 1, 9)) > 0.5, RNG.random((4, 9)) > 0.5])


@pytest.mark.parametrize("op,dtype", [(op, dtype) for op in ("Max", "Min", "Sum", "Mean")
                                      for dtype in ("float32", "float16", "uint8", "int64")
                                      if op != "Mean" or dtype.startswith("float")])
def test_variadic(op, dtype):
    shapes = [(2, 3, 7), (7,), (3, 1), ()]
    for n in (1, 2, 4):
        xs = [(RNG.random(s) * 100).astype(dtype) for s in shapes[:n]]
        check_against_reference(op, {}, xs)


@pytest.mark.parametrize("op", ("Max", "Min"))
def test_max_min_propagate_nan(op):
    a = with_specials(randn((6, 8), "float32"))
    b = randn((6, 8), "float32")
    check_against_reference(op, {}, [a, b])
    check_against_reference(op, {}, [b, a])


@pytest.mark.parametrize("dtype", ("float32", "int64", "bool"))
def test_where(dtype):
    cond = RNG.random((3, 1, 9)) > 0.5
    a = (RNG.random((4, 9)) * 10).astype(dtype)
    b = (RNG.random((9,)) * 10).astype(dtype)
    check_against_reference("Where", {}, [cond, a, b])


def test_prelu():
    x = randn((2, 6, 5, 7), "float32")
    check_against_reference("PRelu", {}, [x, randn((6, 1, 1), "float32")])
    check_against_reference("PRelu", {}, [x, randn((7,), "float32")])
    check_against_reference("PRelu", {}, [x.astype("float16"), randn((1,), "float16")])


CAST_DTYPES = ("float32", "float64", "float16", "int64", "int32", "int8", "uint8", "bool")


@pytest.mark.parametrize("src", CAST_DTYPES)
def test_cast_between_all_dtypes(src):
    x = randn((3, 17), "float64", 30)  # within int8 range: out-of-range float->int is undefined
    x[0, :4] = [0.0, -0.7, 0.7, 126.9]
    x = x.astype(src)
    for to in CAST_DTYPES:
        x_in = np.abs(x) if np.dtype(to).kind == "u" and src != "bool" else x
        check_against_reference("Cast", {"to": to}, [x_in])


def test_large_tensor_is_parallel_and_exact():
    """A 1x64x56x56 broadcast add goes through the parallel, vectorized path."""
    x = randn((1, 64, 56, 56), "float32")
    bias = randn((64, 1, 1), "float32")
    kernel = compile_kernel("Add", {}, [x, bias]).kernel
    assert "T.parallel" in kernel.func.script() and "T.vectorized" in kernel.func.script()
    check_against_reference("Add", {}, [x, bias], rtol=0)
