"""Conv and ConvTranspose kernels against the registry's numpy reference.

Each case names the rule it must exercise, so that a rule that silently stops applying
(and leaves the case to the fallback) fails the test.
"""
import numpy as np
import pytest

from kernel_harness import Const, assert_close, compile_kernel

from nnforge.ir import get_op

RNG = np.random.default_rng(0)


def _run(op, attrs, arrays, const):
    """Compile `op` (inputs flagged in `const` are constants), run it, compare it with the
    registry's reference; returns the schedule description."""
    inputs = [Const(a) if c else a for a, c in zip(arrays, const)]
    kernel = compile_kernel(op, attrs, inputs)
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


def _run_conv(shape, m, k, *, op="Conv", group=1, bias=True, const_weight=True, dtype="float32", **attrs):
    arrays = _conv_inputs(op, shape, m, k, group, bias, dtype)
    return _run(op, {"group": group, **attrs}, arrays, [False, const_weight, True])


BLOCKED = "direct, tile"
DEPTHWISE = "depthwise"
GENERIC = "generic"


@pytest.mark.parametrize("case, expect", [
    (dict(shape=(1, 64, 20, 20), m=64, k=3, pads=(1, 1, 1, 1)), BLOCKED),
    (dict(shape=(1, 3, 23, 19), m=10, k=3, strides=(2, 2), pads=(1, 0, 2, 1)), BLOCKED),  # odd, asymmetric
    (dict(shape=(1, 3, 45, 45), m=16, k=11, strides=(4, 4)), BLOCKED),  # AlexNet conv1 style
    (dict(shape=(1, 5, 17, 17), m=20, k=7, strides=(2, 2), pads=(3, 3, 3, 3), bias=False), BLOCKED),
    (dict(shape=(1, 12, 15, 15), m=9, k=5, pads=(2, 2, 2, 2), dilations=(2, 2), group=3), BLOCKED),
    (dict(shape=(1, 8, 11, 9), m=6, k=3, pads=(1, 1, 1, 1), group=2), BLOCKED),
    (dict(shape=(1, 68, 7, 7), m=24, k=1, group=4), BLOCKED),  # ShuffleNet grouped 1x1, 17-channel blocks
    (dict(shape=(2, 40, 13, 13), m=36, k=1), BLOCKED),  # batch 2, channel tails
    (dict(shape=(1, 8, 9, 11), m=8, k=3, pads=(1, 1, 1, 1), const_weight=False), BLOCKED),
    (dict(shape=(1, 4, 6, 6), m=4, k=1, strides=(2, 2), pads=(0, 0, 1, 1), dilations=(1, 1)), BLOCKED),
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


@pytest.mark.parametrize("case", [
    dict(shape=(1, 4, 5, 5), m=3, k=3, strides=(2, 2), pads=(1, 1, 1, 1), output_padding=(1, 1)),
    dict(shape=(1, 6, 4, 7), m=4, k=4, strides=(2, 3), pads=(0, 1, 2, 0), group=2, bias=False),
    dict(shape=(1, 3, 6, 6), m=2, k=3, dilations=(2, 2), const_weight=False),
    dict(shape=(2, 4, 3, 3), m=5, k=2, strides=(3, 3), dtype="float64"),
])
def test_conv_transpose_matches_reference(case):
    assert GENERIC in _run_conv(op="ConvTranspose", **case)
