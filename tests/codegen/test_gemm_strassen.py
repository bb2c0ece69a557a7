"""Strassen over the tiled GEMM (codegen/gemm_strassen.py): the coefficient tables against
numpy, the kernels on odd sizes against the registry reference, and when the cost model
picks the rule."""
import numpy as np
import pytest
import tvm

from kernel_harness import CompiledKernel, Const, _split_inputs, assert_close

from nnforge.codegen import rules
from nnforge.codegen.gemm_strassen import strassen_coefficients, strassen_flops, strassen_kernel, strassen_reference
from nnforge.codegen.kernel import CpuTarget, KernelInput, LowerNode
from nnforge.codegen.rules import ScheduleOptions, select
from nnforge.ir import get_op
from nnforge.ir.types import TensorType

RNG = np.random.default_rng(0)
# rel. error bound (max|diff| / max|ref|) on these small sizes; plain fp32 GEMM is held to 1e-5.
# Each level adds and subtracts blocks before multiplying: measured ~2e-7 (L1), ~6e-7 (L2) here.
STRASSEN_RTOL = {1: 1e-5, 2: 2e-5}


def _node(op, attrs, inputs):
    opdef = get_op(op)
    attrs = opdef.check_attrs(attrs, "s")
    arrays, kinputs = _split_inputs(inputs)
    outs = opdef.infer_types([k.type for k in kinputs], attrs, "s")
    return LowerNode(op, "s", attrs, kinputs, outs, CpuTarget.host()), arrays


def _run_strassen(op, attrs, inputs, levels):
    node, arrays = _node(op, attrs, inputs)
    kernel = strassen_kernel(node, levels)
    ex = tvm.compile(kernel.func.with_attr("global_symbol", "main"), target=node.target.tvm_target())
    (actual,) = CompiledKernel(kernel, node, ex["main"])(arrays)
    opdef = get_op(op)
    (expected,) = opdef.run(arrays, node.attrs)
    assert_close(actual, np.asarray(expected), rtol=STRASSEN_RTOL[levels], what=f"strassen {levels} {op}: ")
    return kernel


@pytest.mark.parametrize("levels", [1, 2])
@pytest.mark.parametrize("m, k, n", [(7, 9, 5), (33, 17, 65), (64, 64, 64)])
def test_reference_definition(levels, m, k, n):
    """The numpy definition of the block tables is A @ B, odd sizes padded."""
    a, b = RNG.standard_normal((m, k)), RNG.standard_normal((k, n))
    np.testing.assert_allclose(strassen_reference(a, b, levels), a @ b, rtol=1e-12, atol=1e-12)
    u, v, w = strassen_coefficients(levels)
    assert u.shape == v.shape == (7 ** levels, 4 ** levels) and w.shape == (4 ** levels, 7 ** levels)


@pytest.mark.parametrize("levels, m, k, n, const_b", [
    (1, 7, 9, 5, True),
    (1, 33, 17, 65, False),
    (2, 33, 17, 65, True),
    (2, 38, 21, 19, False),
    (2, 130, 67, 99, True),
])
def test_matmul_odd_sizes(levels, m, k, n, const_b):
    a, b = RNG.standard_normal((m, k)).astype("float32"), RNG.standard_normal((k, n)).astype("float32")
    kernel = _run_strassen("MatMul", {}, [a, Const(b) if const_b else b], levels)
    assert kernel.extra["flops"] == strassen_flops(m, k, n, levels, const_b)


def test_gemm_epilogue():
    a, b, c = (RNG.standard_normal(s).astype("float32") for s in ((45, 31), (29, 31), (29,)))
    _run_strassen("Gemm", {"transB": 1, "alpha": 0.5, "beta": -2.0}, [a, Const(b), c], 1)


def test_strassen_flops_fall_towards_seven_eighths():
    nominal = 2 * 4096 ** 3
    assert 0.875 < strassen_flops(4096, 4096, 4096, 1, True) / nominal < 0.88
    assert 0.765 < strassen_flops(4096, 4096, 4096, 2, True) / nominal < 0.775
    assert strassen_flops(64, 64, 64, 2, False) > 0.8 * 2 * 64 ** 3  # additions weigh on small sizes


def _big_node(size):
    t = TensorType("float32", (size, size))
    return LowerNode("MatMul", "mm", {}, [KernelInput(t), KernelInput(t)], [t], CpuTarget.host())


def test_cost_model_picks_the_tiled_gemm_where_it_is_faster():
    """Measured on the 2-core AVX-512 machine (benchmarks/gemm.py): Strassen loses up to 2048."""
    for size in (512, 2048):
        choice = select(_big_node(size))
        assert choice.rule.name == "matmul-packed", choice.explain()
        assert "gemm-strassen" in choice.explain()


def test_override_forces_strassen():
    choice = select(_big_node(256), ScheduleOptions({"strassen": True}))
    assert choice.rule.name == "gemm-strassen" and "strassen 2 levels" in choice.kernel.schedule
    assert rules.estimate_seconds(_big_node(256), choice.rule, choice.kernel) > 0
