"""Conv and ConvTranspose kernels against the registry's numpy reference.

Each case names the rule it must exercise, so that a rule that silently stops applying
(and leaves the case to the fallback) fails the test.
"""
import numpy as np
import pytest

from kernel_harness import Const, assert_close, compile_kernel

from nnforge.codegen.conv2d import plan_blocked_conv, tile_cycles_per_fma, vector_registers
from nnforge.codegen.conv2d_generic import ConvGeometry
from nnforge.codegen.kernel import CpuTarget
from nnforge.codegen.rules import ScheduleOptions
from nnforge.ir import get_op

RNG = np.random.default_rng(0)


DIRECT = ScheduleOptions({"direct": True})  # these cases test the direct rules (not Winograd, im2col)


def _run(op, attrs, arrays, const, target=None):
    """Compile `op` (inputs flagged in `const` are constants), run it, compare it with the
    registry's reference; returns the schedule description."""
    inputs = [Const(a) if c else a for a, c in zip(arrays, const)]
    kernel = compile_kernel(op, attrs, inputs, target, DIRECT)
    (actual,) = kernel(arrays)
    opdef = get_op(op)
    (expected,) = opdef.run(arrays, opdef.check_attrs(attrs))
    assert_close(actual, np.asarray(expected), what=f"{op} {attrs}: ")
    return kernel.kernel.schedule


def _conv_inputs(op, shape, m, k, group, bias, dtype):
    x = RNG.standard_normal(shape).astype(dtype)
    w_shape = (m, shape[1] // group, k, k) if op == "Conv" else (shape[1], m // group, k, k)
    arrays = [x, RNG.standard_normal(w_shape).astype(dtype)]
    return arrays + [RNG.standard_normal(m).astype(dtype)] if bias else arrays


def _run_conv(shape, m, k, *, op="Conv", group=1, bias=True, const_weight=True, dtype="float32", target=None,
              **attrs):
    arrays = _conv_inputs(op, shape, m, k, group, bias, dtype)
    return _run(op, {"group": group, **attrs}, arrays, [False, const_weight, True], target)


BLOCKED = "direct, tile"
GEMM_1X1 = "conv2d NCHW->"  # the 1x1 rule reads the input unpacked
DEPTHWISE = "depthwise"
GENERIC = "generic"


@pytest.mark.parametrize("case, expect", [
    (dict(shape=(1, 64, 20, 20), m=64, k=3, pads=(1, 1, 1, 1)), BLOCKED),
    (dict(shape=(1, 3, 23, 19), m=10, k=3, strides=(2, 2), pads=(1, 0, 2, 1)), BLOCKED),  # odd, asymmetric
    (dict(shape=(1, 3, 45, 45), m=16, k=11, strides=(4, 4)), BLOCKED),  # AlexNet conv1 style
    (dict(shape=(1, 5, 17, 17), m=20, k=7, strides=(2, 2), pads=(3, 3, 3, 3), bias=False), BLOCKED),
    (dict(shape=(1, 12, 15, 15), m=9, k=5, pads=(2, 2, 2, 2), dilations=(2, 2), group=3), BLOCKED),
    (dict(shape=(1, 8, 11, 9), m=6, k=3, pads=(1, 1, 1, 1), group=2), BLOCKED),
    (dict(shape=(1, 68, 7, 7), m=24, k=1, group=4), BLOCKED),  # grouped 1x1, 6 outputs per group
    (dict(shape=(1, 136, 28, 28), m=136, k=1, group=4), BLOCKED),  # ShuffleNet: 34 outputs per group
    (dict(shape=(1, 64, 14, 14), m=64, k=1, group=4), GEMM_1X1),  # whole vectors per group
    (dict(shape=(2, 40, 13, 13), m=36, k=1), GEMM_1X1),  # batch 2, channel tails
    (dict(shape=(1, 64, 7, 7), m=96, k=1, bias=False, const_weight=False), GEMM_1X1),  # 2-vector block, 7-col tile
    (dict(shape=(1, 32, 9, 11), m=70, k=1), GEMM_1X1),  # 11-column tail
    (dict(shape=(1, 32, 28, 28), m=64, k=3, pads=(1, 1, 1, 1)), BLOCKED),  # 14x32 tile (AVX-512)
    (dict(shape=(1, 24, 13, 13), m=40, k=3, pads=(1, 1, 1, 1), const_weight=False), BLOCKED),  # 13-col, oc tail
    (dict(shape=(1, 16, 17, 17), m=33, k=3, strides=(2, 2)), BLOCKED),  # 8-column output, 33 channels
    (dict(shape=(1, 16, 8, 8), m=16, k=1, strides=(2, 2)), GEMM_1X1),  # strided 1x1 (ResNet projection)
    (dict(shape=(1, 24, 15, 13), m=40, k=1, strides=(2, 3)), GEMM_1X1),  # strides that skip the last pixels
    (dict(shape=(1, 8, 9, 11), m=8, k=3, pads=(1, 1, 1, 1), const_weight=False), BLOCKED),
    (dict(shape=(1, 4, 6, 6), m=4, k=1, strides=(2, 2), pads=(0, 0, 1, 1), dilations=(1, 1)), BLOCKED),  # pad read
    (dict(shape=(1, 40, 28, 28), m=40, k=3, strides=(2, 2), pads=(1, 1, 1, 1), group=40), DEPTHWISE),
    (dict(shape=(1, 20, 9, 13), m=20, k=3, pads=(0, 1, 2, 1), dilations=(2, 2), group=20, bias=False,
          const_weight=False), DEPTHWISE),
    (dict(shape=(1, 17, 8, 8), m=17, k=5, pads=(2, 2, 2, 2), group=17), DEPTHWISE),
    (dict(shape=(1, 4, 8, 8), m=8, k=3, pads=(1, 1, 1, 1), group=4), BLOCKED),  # channel multiplier 2
    (dict(shape=(1, 6, 10, 9), m=8, k=3, strides=(2, 1), pads=(1, 2, 0, 1), dtype="float64"), GENERIC),
    (dict(shape=(1, 6, 10, 10), m=6, k=3, pads=(1, 1, 1, 1), group=3, bias=False, const_weight=False,
          dtype="float64"), GENERIC),
    (dict(shape=(1, 6, 7, 7), m=6, k=3, pads=(1, 1, 1, 1), group=6, dtype="float64"), GENERIC),
])
def test_conv_matches_reference(case, expect):
    assert expect in _run_conv(**case)


@pytest.mark.parametrize("case, expect", [
    (dict(shape=(1, 16, 12, 12), m=24, k=3, pads=(1, 1, 1, 1)), BLOCKED),
    (dict(shape=(1, 136, 7, 7), m=136, k=1, group=4, bias=False), BLOCKED),  # separate unpack pass
    (dict(shape=(1, 40, 9, 11), m=36, k=1), GEMM_1X1),
    (dict(shape=(1, 64, 7, 7), m=96, k=1, bias=False, const_weight=False), GEMM_1X1),
    (dict(shape=(1, 20, 9, 13), m=20, k=3, pads=(1, 1, 1, 1), group=20), DEPTHWISE),
    (dict(shape=(1, 6, 10, 9), m=8, k=3, strides=(2, 1), pads=(1, 2, 0, 1), dtype="float64"), GENERIC),
    (dict(shape=(1, 6, 7, 7), m=6, k=3, pads=(1, 1, 1, 1), group=3, bias=False, dtype="float64"), GENERIC),
])
def test_conv_fused_relu_matches_reference(case, expect):
    """activation="Relu" in every direct family's epilogue (with and without a bias) against
    the registry's reference, which applies max(y, 0) after the bias."""
    assert expect in _run_conv(activation="Relu", **case)


@pytest.mark.parametrize("case", [
    dict(shape=(1, 4, 5, 5), m=3, k=3, strides=(2, 2), pads=(1, 1, 1, 1), output_padding=(1, 1)),
    dict(shape=(1, 6, 4, 7), m=4, k=4, strides=(2, 3), pads=(0, 1, 2, 0), group=2, bias=False),
    dict(shape=(1, 3, 6, 6), m=2, k=3, dilations=(2, 2), const_weight=False),
    dict(shape=(2, 4, 3, 3), m=5, k=2, strides=(3, 3), dtype="float64"),
])
def test_conv_transpose_matches_reference(case):
    assert GENERIC in _run_conv(op="ConvTranspose", **case)


@pytest.mark.parametrize("lanes", [8, 16])
@pytest.mark.parametrize("c, hw, m, k", [(32, 28, 64, 3), (24, 13, 40, 3), (48, 7, 64, 1), (16, 9, 96, 3)])
def test_conv_tiles_of_both_isas(c, hw, m, k, lanes):
    """The tiles planned for AVX2 (8 lanes) and AVX-512 (16) compute correctly (an 8-lane plan
    runs on an AVX-512 machine too, so the smaller register file is exercised here as well)."""
    host = CpuTarget.host()
    if lanes > host.vector_lanes:
        pytest.skip("no AVX-512 on this machine")
    pad = k // 2
    p = plan_blocked_conv(ConvGeometry(1, c, hw, hw, m, k, k, 1, 1, 1, 1, pad, pad, 1, hw, hw), lanes,
                          exact_columns=k == 1)
    desc = _run_conv((1, c, hw, hw), m, k, pads=(pad,) * 4, target=CpuTarget(host.mcpu, host.num_cores, lanes))
    assert f"tile {p.reg_n}x{p.oc_bn}," in desc


@pytest.mark.parametrize("lanes", [8, 16])
@pytest.mark.parametrize("ow", [7, 13, 14, 28, 55, 56, 112, 224])
def test_plan_fits_register_file_and_saturates_fma(lanes, ow):
    """Planned tiles fit the ISA's registers (accumulators, two sets of weight vectors, three
    more) and keep both FMA pipes busy without padding where the width allows it."""
    g = ConvGeometry(1, 256, ow, ow, 256, 3, 3, 1, 1, 1, 1, 1, 1, 1, ow, ow)
    p = plan_blocked_conv(g, lanes)
    vecs = p.oc_bn // lanes
    assert vecs * p.reg_n + 2 * vecs + 3 <= vector_registers(lanes)
    assert p.cols_padded % p.reg_n == 0 and p.cols_padded >= ow and p.mg_padded == 256
    assert p.slowdown <= 1.25  # width tails cost a little padding at most
    if ow % 4 == 0:  # a tile of 4 columns x 2 vectors fits both ISAs: no padding, FMA pipes saturated
        # (one vector per column would be load-bound: a broadcast per FMA)
        assert vecs >= 2 and tile_cycles_per_fma(vecs, p.reg_n) == 0.5 and p.slowdown == 1.0


def test_plan_pays_for_padding():
    """Few output channels get a one-vector block; the slowdown counts padded channels."""
    g = ConvGeometry(1, 16, 20, 20, 10, 3, 3, 1, 1, 1, 1, 1, 1, 1, 20, 20)
    p = plan_blocked_conv(g, 16)
    assert p.oc_bn == 16 and p.slowdown >= 1.6

