"""int8 kernels (codegen/int8.py, int8_conv.py, int8_dot.py) bit for bit against the registry's
numpy reference.

Each case names the kernel it must exercise, so a rule that silently stops applying fails:
vpdpbusd where this CPU has AVX-512 VNNI (else the generic rule), vpmaddubsw when compiled for
an AVX2 CPU (haswell code runs here too), the generic rules when forced or when nothing else is
exact. Requantization scales are chosen from the accumulators' spread so outputs cover the int8
range instead of saturating to two values.
"""
import math

import numpy as np
import pytest

from kernel_harness import Const, assert_close, compile_kernel

import nnforge
from nnforge.codegen.int8_dot import VPDPBUSD, cpu_has, pairs_fit_int16
from nnforge.codegen.kernel import CpuTarget
from nnforge.codegen.rules import ScheduleOptions
from nnforge.ir import Graph, get_op, interpret
from nnforge.ir.types import TensorType

RNG = np.random.default_rng(5)
VNNI = cpu_has(CpuTarget.host().mcpu, VPDPBUSD.feature)
GENERIC = ScheduleOptions({"int8": False})
AVX2 = CpuTarget("haswell", 2, 8)  # runs here too: the AVX2 path and the guard against its int16 saturation


def _ints(dtype, shape):
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max + 1, shape).astype(dtype)


def _requant_attrs(reduction: int, channels: int, per_channel: bool, **attrs) -> dict:
    """multiplier/shift taking accumulators of `reduction` int8 products to about +-64."""
    scale = 64 / (math.sqrt(reduction) * 74 * 74)  # std of (u8 - zp) and of int8 weights: ~74
    shift = RNG.integers(16, 31, channels) if per_channel else np.array([24])
    mult = np.maximum(1, np.round(scale * 2.0 ** shift * RNG.uniform(0.5, 1.5, shift.shape))).astype(np.int64)
    return {"multiplier": [int(v) for v in mult], "shift": [int(v) for v in shift], **attrs}


def _check(op, attrs, arrays, const, expect, options=None, saturating=False, target=None):
    """Compile with inputs flagged in `const` constant; compare bit for bit; assert the rule used."""
    kernel = compile_kernel(op, attrs, [Const(a) if c else a for a, c in zip(arrays, const)], target, options)
    (actual,) = kernel(arrays)
    opdef = get_op(op)
    (expected,) = opdef.run(arrays, opdef.check_attrs(attrs))
    assert_close(actual, np.asarray(expected), what=f"{op} {kernel.kernel.schedule}: ")
    if expect == "vpdpbusd" and not VNNI:
        expect = "generic"
    assert expect in kernel.kernel.schedule, kernel.kernel.schedule
    assert np.unique(expected).size > 2 or saturating, "requantization saturates everything"


QCONV_CASES = [  # x shape, M, k, attrs, x dtype, x_zero_point, per-channel, out dtype
    ((1, 19, 11, 13), 21, 3, dict(strides=(2, 2), pads=(1, 0, 2, 1)), "uint8", 130, True, "int8"),
    ((2, 16, 9, 9), 32, 1, {}, "int8", -3, False, "uint8"),
    ((1, 12, 10, 10), 24, 3, dict(pads=(1, 1, 1, 1), group=3, dilations=(2, 2)), "int8", 5, True, "int8"),
    ((1, 32, 8, 8), 64, 3, dict(pads=(1, 1, 1, 1), group=2), "uint8", 77, True, "int8"),  # groups of whole blocks
    ((1, 64, 14, 14), 40, 3, dict(pads=(1, 1, 1, 1)), "uint8", 0, True, "int8"),  # 2-vector block, channel tail
    ((1, 3, 17, 17), 16, 7, dict(strides=(2, 2), pads=(3, 3, 3, 3)), "uint8", 128, False, "int8"),  # RGB stem
    ((1, 24, 15, 13), 40, 1, dict(strides=(2, 3)), "int8", 0, True, "uint8"),  # strided 1x1
]


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape, m, k, attrs, xd, zp, per_channel, od", QCONV_CASES)
def test_qconv(shape, m, k, attrs, xd, zp, per_channel, od, relu):
    group = attrs.get("group", 1)
    cg = shape[1] // group
    arrays = [_ints(xd, shape), _ints("int8", (m, cg, k, k)), RNG.integers(-3000, 3000, m).astype("int32")]
    a = _requant_attrs(cg * k * k, m, per_channel, **attrs, x_zero_point=zp, out_zero_point=7 if od == "int8" else 120,
                       out_dtype=od, activation="Relu" if relu else "")
    _check("QConv", a, arrays, [False, True, True], "vpdpbusd")
    if relu:  # the portable rule, same numbers
        _check("QConv", a, arrays, [False, True, True], "generic", GENERIC)


@pytest.mark.parametrize("shape, m, k, attrs, const", [
    ((1, 8, 7, 7), 8, 3, dict(pads=(1, 1, 1, 1), group=8), False),  # depthwise with run-time weights
    ((1, 8, 3, 64), 8, 3, dict(pads=(1, 1, 1, 1), group=8), True),  # depthwise, long rows: vectorized along them
    ((1, 6, 8, 8), 10, 3, dict(pads=(1, 1, 1, 1)), False),  # run-time weights: generic
])
def test_qconv_generic_only(shape, m, k, attrs, const):
    arrays = [_ints("uint8", shape), _ints("int8", (m, shape[1] // attrs.get("group", 1), k, k)),
              RNG.integers(-3000, 3000, m).astype("int32")]
    a = _requant_attrs(arrays[1][0].size, m, True, **attrs, x_zero_point=99)
    _check("QConv", a, arrays, [False, const, const], "generic")


DEPTHWISE_CASES = [  # x shape, k, attrs, x dtype, out dtype, residual
    ((1, 19, 13, 11), 3, dict(pads=(1, 1, 1, 1)), "uint8", "int8", False),  # channels not a multiple of the lanes
    ((2, 32, 14, 14), 3, dict(strides=(2, 2), pads=(0, 0, 1, 1)), "int8", "uint8", False),  # batch 2, stride 2
    ((1, 16, 9, 9), 5, dict(pads=(2, 1, 2, 3), dilations=(2, 1)), "uint8", "uint8", False),
    ((2, 21, 7, 7), 3, dict(pads=(1, 1, 1, 1)), "int8", "int8", True),  # with a residual
]


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape, k, attrs, xd, od, residual", DEPTHWISE_CASES)
def test_qconv_depthwise(shape, k, attrs, xd, od, residual, relu):
    """Depthwise QConv (group == channels) with its own rule, bit for bit; the generic rule agrees."""
    c = shape[1]
    arrays = [_ints(xd, shape), _ints("int8", (c, 1, k, k)), RNG.integers(-3000, 3000, c).astype("int32")]
    a = _requant_attrs(k * k, c, True, **attrs, group=c, x_zero_point=-7 if xd == "int8" else 140,
                       out_zero_point=5 if od == "int8" else 100, out_dtype=od, activation="Relu" if relu else "")
    if residual:
        oh = shape[2] + sum(attrs["pads"][::2]) - k + 1
        arrays.append(_ints("int8", (shape[0], c, oh, oh)))
        a.update(residual_zero_point=-3, residual_multiplier=2**29 + 12345, residual_shift=31)
    const = [False, True, True, False][:len(arrays)]
    _check("QConv", a, arrays, const, "depthwise")
    _check("QConv", a, arrays, const, "generic", GENERIC)


def test_qconv_depthwise_extremes_saturate():
    x = np.where(RNG.random((1, 20, 6, 6)) < 0.5, 255, 0).astype("uint8")
    w = np.where(RNG.random((20, 1, 3, 3)) < 0.5, 127, -128).astype("int8")
    b = np.array([2**31 - 1, -2**31] * 10, "int32")  # the bias add wraps int32
    a = {"pads": (2, 2, 2, 2), "group": 20, "x_zero_point": 255, "multiplier": [2**31 - 1], "shift": [40],
         "out_zero_point": -128, "out_dtype": "int8"}
    _check("QConv", a, [x, w, b], [False, True, True], "depthwise", saturating=True)


def test_qconv_extremes_wrap_and_saturate():
    """Zero points at the ends of the range, extreme inputs and weights, a bias that wraps int32,
    a multiplier and shift that saturate most outputs: still bit-exact."""
    x = np.where(RNG.random((1, 9, 6, 6)) < 0.5, 255, 0).astype("uint8")
    w = np.where(RNG.random((17, 9, 3, 3)) < 0.5, 127, -128).astype("int8")
    b = np.array([2**31 - 1, -2**31] * 8 + [2**31 - 100], "int32")
    a = {"pads": (2, 2, 2, 2), "x_zero_point": 255, "multiplier": [2**31 - 1], "shift": [40], "out_zero_point": -128,
         "out_dtype": "int8"}
    for options, expect in ((None, "vpdpbusd"), (GENERIC, "generic")):
        _check("QConv", a, [x, w, b], [False, True, True], expect, options, saturating=True)


RESIDUAL_CASES = [  # x shape, M, k, attrs, x dtype, residual dtype, residual zero point, out dtype
    ((2, 19, 11, 13), 21, 3, dict(strides=(2, 2), pads=(1, 0, 2, 1)), "uint8", "uint8", 131, "int8"),  # odd, batch 2
    ((1, 16, 9, 9), 32, 1, {}, "int8", "int8", -5, "uint8"),
    ((2, 32, 8, 8), 64, 3, dict(pads=(1, 1, 1, 1), group=2), "uint8", "int8", 0, "uint8"),
    ((1, 24, 15, 13), 40, 1, dict(strides=(2, 3)), "int8", "uint8", 255, "int8"),  # residual zero point at the top
]


def _residual_attrs(reduction, m, attrs, xd, rd, rzp, od, relu):
    """Requantization of the conv and of the residual (about half an output step per residual level)."""
    shift = int(RNG.integers(18, 30))
    return _requant_attrs(reduction, m, True, **attrs, x_zero_point=-4 if xd == "int8" else 120,
                          out_zero_point=7 if od == "int8" else 110, out_dtype=od, activation="Relu" if relu else "",
                          residual_zero_point=rzp, residual_multiplier=int(RNG.integers(2**(shift - 2), 2**shift)),
                          residual_shift=shift)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape, m, k, attrs, xd, rd, rzp, od", RESIDUAL_CASES)
def test_qconv_residual(shape, m, k, attrs, xd, rd, rzp, od, relu):
    """The residual add (+ Relu after it) in the write-back of every QConv rule, bit for bit."""
    group = attrs.get("group", 1)
    cg = shape[1] // group
    oh = (shape[2] + sum(attrs.get("pads", (0,) * 4)[::2]) - k) // attrs.get("strides", (1, 1))[0] + 1
    ow = (shape[3] + sum(attrs.get("pads", (0,) * 4)[1::2]) - k) // attrs.get("strides", (1, 1))[1] + 1
    arrays = [_ints(xd, shape), RNG.integers(-64, 64, (m, cg, k, k)).astype("int8"),
              RNG.integers(-3000, 3000, m).astype("int32"), _ints(rd, (shape[0], m, oh, ow))]
    a = _residual_attrs(cg * k * k, m, attrs, xd, rd, rzp, od, relu)
    const = [False, True, True, False]
    _check("QConv", a, arrays, const, "vpdpbusd")
    _check("QConv", a, arrays, const, "generic", GENERIC)
    _check("QConv", a, arrays, const, "vpmaddubsw", target=AVX2)  # 7-bit weights: pairs fit int16


def test_qconv_residual_saturates():
    """Extreme residuals and a residual multiplier of 2**31 - 1 (shift 0): sums far outside the
    output range saturate exactly as the reference."""
    x, w = _ints("uint8", (1, 9, 6, 6)), RNG.integers(-64, 64, (17, 9, 3, 3)).astype("int8")
    r = np.where(RNG.random((1, 17, 6, 6)) < 0.5, 127, -128).astype("int8")
    b = RNG.integers(-3000, 3000, 17).astype("int32")
    for residual_shift in (0, 62):
        a = _requant_attrs(81, 17, True, pads=(1, 1, 1, 1), x_zero_point=3, out_zero_point=-128, out_dtype="int8",
                           activation="Relu", residual_zero_point=-128, residual_multiplier=2**31 - 1,
                           residual_shift=residual_shift)
        for options, target, expect in ((None, None, "vpdpbusd"), (GENERIC, None, "generic"),
                                        (None, AVX2, "vpmaddubsw")):
            _check("QConv", a, [x, w, b, r], [False, True, True, False], expect, options, saturating=True,
                   target=target)


@pytest.mark.parametrize("shape, m, k, attrs, weight_bits, expect", [
    ((1, 19, 11, 13), 21, 3, dict(strides=(2, 2), pads=(1, 0, 2, 1)), 7, "vpmaddubsw"),
    ((1, 12, 10, 10), 24, 1, dict(group=3), 7, "vpmaddubsw"),
    ((1, 16, 8, 8), 16, 3, dict(pads=(1, 1, 1, 1)), 8, "generic"),  # pairs of 8-bit weights could saturate
])
def test_qconv_avx2(shape, m, k, attrs, weight_bits, expect):
    half = 2 ** (weight_bits - 1)
    w = RNG.integers(-half, half, (m, shape[1] // attrs.get("group", 1), k, k)).astype("int8")
    arrays = [_ints("int8", shape), w, RNG.integers(-3000, 3000, m).astype("int32")]
    a = _requant_attrs(w[0].size, m, True, **attrs, x_zero_point=-20, activation="Relu")
    _check("QConv", a, arrays, [False, True, True], expect, target=AVX2)


def test_qmatmul_avx2():
    x, w = _ints("uint8", (9, 70)), RNG.integers(-64, 64, (70, 20)).astype("int8")
    a = _requant_attrs(70, 20, True, x_zero_point=128)
    _check("QMatMul", a, [x, w, RNG.integers(-100, 100, 20).astype("int32")], [False, True, True], "vpmaddubsw",
           target=AVX2)


@pytest.mark.parametrize("pair, fits", [((127, 2), False), ((127, 1), True), ((64, 64), True), ((-128, 0), True),
                                        ((-128, -1), False), ((127, -128), True)])
def test_pairs_fit_int16(pair, fits):
    """vpmaddubsw adds two u8 x s8 products in int16 with saturation: 255 * (a + b) must stay in range."""
    w = np.array([[0, 0], [pair[0], 0], [pair[1], 0]], "int8")  # pairs along axis 0 start at index 0: (0, a), (b, pad)
    assert pairs_fit_int16(w, 0)
    assert pairs_fit_int16(w[1:], 0) == fits


QMATMUL_CASES = [  # x shape, N, x dtype, zero point, per-channel, out dtype
    ((5, 37), 19, "uint8", 3, True, "int8"),
    ((2, 3, 40), 48, "int8", -7, False, "uint8"),
    ((64, 256), 128, "int8", 0, True, "int8"),
    ((1, 64), 10, "uint8", 255, True, "uint8"),  # GEMV, zero point at the top of the range
]


@pytest.mark.parametrize("shape, cols, xd, zp, per_channel, od", QMATMUL_CASES)
def test_qmatmul(shape, cols, xd, zp, per_channel, od):
    k = shape[-1]
    arrays = [_ints(xd, shape), _ints("int8", (k, cols)), RNG.integers(-30000, 30000, cols).astype("int32")]
    for relu in ("", "Relu"):
        a = _requant_attrs(k, cols, per_channel, x_zero_point=zp, out_zero_point=-3 if od == "int8" else 100,
                           out_dtype=od, activation=relu)
        _check("QMatMul", a, arrays, [False, True, True], "vpdpbusd")
    _check("QMatMul", a, arrays, [False, True, False], "generic")  # run-time bias
    _check("QMatMul", a, arrays, [False, True, True], "generic", GENERIC)


@pytest.mark.parametrize("op, x_shape, w_shape, attrs", [
    ("QMatMul", (1, 5), (5, 1), {}),  # a one-element output: no tile loops
    ("QConv", (1, 5, 1, 1), (9, 5, 3, 3), {"pads": (1, 1, 1, 1)}),  # the kernel larger than the input
    ("QConv", (3, 1, 2, 3), (16, 1, 5, 5), {"pads": (2, 2, 2, 2), "strides": (3, 3)}),
])
def test_tiny_shapes(op, x_shape, w_shape, attrs):
    a = _requant_attrs(math.prod(w_shape[1:]) if op == "QConv" else w_shape[0], 1, False, x_zero_point=9, **attrs)
    _check(op, a, [_ints("uint8", x_shape), _ints("int8", w_shape)], [False, True], "vpdpbusd", saturating=True)


def test_qmatmul_bias_wraps_int32():
    x, w = np.full((3, 8), 255, "uint8"), np.full((8, 4), 127, "int8")
    b = np.array([2**31 - 1, -2**31, 2**31 - 5000, 0], "int32")
    a = {"x_zero_point": 0, "multiplier": [1, 3, 2**31 - 1, 5], "shift": [0, 24, 62, 31], "out_dtype": "int8"}
    _check("QMatMul", a, [x, w, b], [False, True, True], "vpdpbusd", saturating=True)


@pytest.mark.parametrize("axis, per_axis, zp_dtype", [(1, False, "uint8"), (1, True, "int8"), (-1, True, "int32"),
                                                      (0, False, None)])
def test_quantize_dequantize(axis, per_axis, zp_dtype):
    shape = (2, 3, 5, 7)
    n = shape[axis] if per_axis else ()  # per tensor: 0-d scale and zero point
    scale = RNG.uniform(0.05, 2.0, n).astype("float32")
    zp = [_ints(zp_dtype, n)] if zp_dtype else []
    x = (RNG.standard_normal(shape) * (2e9 if zp_dtype == "int32" else 100)).astype("float32")
    x.flat[:4] = np.array([0.5, 1.5, 2.5, -0.5], "float32") * scale.flat[0]  # ties round to even
    _check("QuantizeLinear", {"axis": axis}, [x, scale] + zp, [False] * 3, "quantize-linear")
    for x_dtype in {zp[0].dtype.name if zp else "uint8", "int8"}:  # int8 x with an int32 zero point too
        _check("DequantizeLinear", {"axis": axis}, [_ints(x_dtype, shape), scale] + zp, [False, True, True],
               "dequantize-linear")


def test_quantized_graph_through_compile(tmp_path):
    """QuantizeLinear -> QConv(Relu) -> QMatMul -> DequantizeLinear compiled by nnforge.compile
    equals the reference interpreter exactly, also after export and load."""
    g = Graph("int8")
    x = g.add_input("x", TensorType("float32", (1, 8, 6, 6)))
    (q,) = g.add_node("QuantizeLinear", [x, g.constant(np.float32(0.05)), g.constant(np.uint8(128))])
    w = g.constant(_ints("int8", (16, 8, 3, 3)))
    (c,) = g.add_node("QConv", [q, w, g.constant(RNG.integers(-500, 500, 16).astype("int32"))],
                      _requant_attrs(72, 16, True, pads=(1, 1, 1, 1), x_zero_point=128, activation="Relu"))
    (mm,) = g.add_node("QMatMul", [c, g.constant(_ints("int8", (6, 24)))], _requant_attrs(6, 24, False))
    (y,) = g.add_node("DequantizeLinear", [mm, g.constant(np.float32(0.1))])
    g.set_outputs([y])
    feed = {"x": (RNG.standard_normal((1, 8, 6, 6)) * 3).astype("float32")}
    (expected,) = interpret(g, feed)
    compiled = nnforge.compile(g, passes=[], cache=False)
    compiled.export(str(tmp_path / "int8"))
    assert np.unique(expected).size > 10
    for model in (compiled, nnforge.load(str(tmp_path / "int8"))):
        np.testing.assert_array_equal(model.run(feed)[0], expected)


def test_bad_zero_point_is_a_clear_error():
    a = _requant_attrs(8, 4, False, x_zero_point=300)
    with pytest.raises(nnforge.CompileError, match="x_zero_point 300 is outside uint8"):
        compile_kernel("QMatMul", a, [_ints("uint8", (2, 8)), Const(_ints("int8", (8, 4)))])
