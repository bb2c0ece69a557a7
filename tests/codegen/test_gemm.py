"""Gemm and MatMul kernels (codegen/gemm.py) against the registry's numpy reference.

Each case names the rule it must exercise, so that the packed rule silently declining
a case it should take (and leaving it to the fallback) fails the test.
"""
import numpy as np
import pytest

from kernel_harness import Const, assert_close, compile_kernel

from nnforge.codegen.kernel import CpuTarget
from nnforge.ir import get_op

RNG = np.random.default_rng(0)
PACKED, GEMV, GENERIC = "gemm packed", "gemv packed", "generic"


def _array(shape, dtype):
    x = RNG.standard_normal(shape) * (10 if np.issubdtype(dtype, np.integer) else 1)
    return x.astype(dtype)


def _run(op, attrs, arrays, const):
    """Compile, run, compare with the reference; returns the schedule description."""
    kernel = compile_kernel(op, attrs, [Const(a) if c else a for a, c in zip(arrays, const)])
    (actual,) = kernel(arrays)
    opdef = get_op(op)
    (expected,) = opdef.run(arrays, opdef.check_attrs(attrs))
    assert_close(actual, np.asarray(expected), what=f"{op} {attrs}: ")
    return kernel.kernel.schedule


@pytest.mark.parametrize("m, n, k, attrs, c_shape, const_b, dtype, expect", [
    (1, 1000, 1024, {"transB": 1}, (1000,), True, "float32", GEMV),  # classifier layer
    (1, 70, 33, {}, None, True, "float32", GEMV),  # panel tail
    (7, 37, 19, {"transA": 1, "alpha": 0.5, "beta": 2.0}, (7, 1), True, "float32", PACKED),
    (33, 50, 64, {"transB": 1}, (1, 50), False, "float32", PACKED),
    (13, 17, 5, {"transA": 1, "transB": 1}, (1,), True, "float32", PACKED),
    (64, 96, 128, {"beta": 0.0}, (64, 96), True, "float32", PACKED),
    (5, 6, 7, {"alpha": 2.0}, (6,), True, "float64", GENERIC),
    (5, 6, 7, {"transB": 1}, (5, 6), False, "int32", GENERIC),
])
def test_gemm_matches_reference(m, n, k, attrs, c_shape, const_b, dtype, expect):
    a = _array((k, m) if attrs.get("transA") else (m, k), dtype)
    b = _array((n, k) if attrs.get("transB") else (k, n), dtype)
    arrays = [a, b] + ([_array(c_shape, dtype)] if c_shape is not None else [])
    assert expect in _run("Gemm", attrs, arrays, [False, const_b, True])


@pytest.mark.parametrize("a_shape, b_shape, const_b, dtype, expect", [
    ((3, 1, 5, 8), (8, 20), True, "float32", PACKED),  # batch dims fold into rows
    ((8,), (8, 20), True, "float32", GEMV),
    ((4, 8), (8,), True, "float32", PACKED),
    ((6, 9), (9, 33), False, "float32", PACKED),
    ((2, 3, 5, 8), (3, 8, 20), True, "float32", PACKED),  # batch broadcast on both sides
    ((5, 8), (2, 8, 4), False, "float32", PACKED),
    ((2, 1, 4, 3), (1, 3, 3, 2), False, "float64", GENERIC),
    ((4, 3), (3,), True, "int32", GENERIC),
    ((8,), (8,), True, "float32", GEMV),  # 0-d result
    ((4,), (2, 4, 1), False, "float32", GEMV),  # 1-D x 3-D with a unit output row (ONNX test_matmul_1d_3d)
    ((4,), (2, 4, 3), True, "float32", GEMV),
    ((2, 4, 9, 16), (2, 4, 16, 9), False, "float32", PACKED),  # attention scores: run-time batched B
    ((2, 4, 9, 9), (2, 4, 9, 16), False, "float32", PACKED),
    ((3, 5), (2, 5, 1), False, "float64", GENERIC),
])
def test_matmul_matches_reference(a_shape, b_shape, const_b, dtype, expect):
    arrays = [_array(a_shape, dtype), _array(b_shape, dtype)]
    assert expect in _run("MatMul", {}, arrays, [False, const_b])


def test_gemm_empty_k_with_runtime_c():
    """K = 0 but C is a run-time input: not a constant output, the generic rule adds C."""
    a, b, c = _array((3, 0), "float32"), _array((0, 4), "float32"), _array((3, 4), "float32")
    assert GENERIC in _run("Gemm", {"beta": 0.5}, [a, b, c], [False, False, False])


def test_gemm_scalar_c():
    a, b, c = _array((3, 4), "float32"), _array((4, 5), "float32"), _array((), "float32")
    assert PACKED in _run("Gemm", {"beta": 0.5}, [a, b, c], [False, True, True])


def _plan_of(schedule: str) -> tuple:
    """(mr, bn, kc) from a packed kernel's description."""
    import re

    mr, bn, kc = re.search(r"tile (\d+)x(\d+), K block (\d+)", schedule).groups()
    return int(mr), int(bn), int(kc)


@pytest.mark.parametrize("m", list(range(1, 18)))
def test_skinny_and_tail_rows(m):
    """Every row count 1..17 (AVX-512: one skinny tile up to 8 rows, two up to 16, then padded
    tiles), columns not a multiple of the vector, run-time and constant B alternating."""
    a, b = _array((m, 19), "float32"), _array((19, 37), "float32")
    schedule = _run("MatMul", {}, [a, b], [False, m % 2 == 0])
    mr, bn, _ = _plan_of(schedule)
    if CpuTarget.host().vector_lanes == 16:
        assert mr == (m if m <= 8 else -(-m // 2) if m <= 16 else mr)
    assert 37 % bn != 0


@pytest.mark.parametrize("m, k, n, kc", [
    (20, 1030, 40, 206),  # K blocks of 206 (K not a multiple of 512)
    (20, 1031, 40, 1031),  # prime K: one block
    (3, 1030, 70, 1030),  # a single row tile streams B once: no K blocks
])
def test_k_blocks(m, k, n, kc):
    a, b, c = _array((m, k), "float32"), _array((k, n), "float32"), _array((n,), "float32")
    schedule = _run("Gemm", {"alpha": 0.5, "beta": 2.0}, [a, b, c], [False, True, True])
    assert _plan_of(schedule)[2] == kc


def test_avx2_tiles_are_correct():
    """The AVX2 plan (8 lanes, 4x16 tiles) also runs here: tiles come from vector_lanes only."""
    from dataclasses import replace

    from kernel_harness import check_against_reference

    from nnforge.codegen.gemm import plan_gemm

    assert (plan_gemm(1024, 1024, 1024, 8).mr, plan_gemm(1024, 1024, 1024, 8).bn) == (4, 16)
    assert (plan_gemm(1024, 1024, 1024, 16).mr, plan_gemm(1024, 1024, 1024, 16).bn) == (8, 32)
    target = replace(CpuTarget.host(), vector_lanes=8)
    a, b = _array((45, 70), "float32"), _array((70, 33), "float32")
    check_against_reference("MatMul", {}, [a, b], target=target)
    check_against_reference("MatMul", {}, [a[:3], Const(b)], target=target)


def test_plan_keeps_every_core_busy():
    from nnforge.codegen.gemm import plan_gemm

    for rows, cols in ((1024, 64), (64, 4096), (16, 4096), (1, 1000)):
        p = plan_gemm(rows, cols, 1024, 16, cores=2)
        chunks = (p.cols_padded // (p.bn * p.group)) * (p.rows_padded // (p.mr * p.row_tiles))
        assert chunks >= 4, (rows, cols, p)
