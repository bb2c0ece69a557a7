"""Block-sparse kernels (codegen/sparse.py) against the registry's numpy reference.

The weights are pruned in numpy with a known block pattern; each case forces the "sparse"
family so that the sparse rule silently declining a case fails the test, and checks which
BSR block shape the layout chose.
"""
import numpy as np
import pytest

from kernel_harness import Const, assert_close, compile_kernel

from nnforge.codegen import rules
from nnforge.codegen.kernel import CpuTarget, KernelInput, LowerNode
from nnforge.codegen.sparse import choose_block, to_bsr
from nnforge.ir import get_op
from nnforge.ir.types import TensorType

RNG = np.random.default_rng(0)
SPARSE_ON = rules.ScheduleOptions({"sparse": True})
LANES = CpuTarget.host().vector_lanes


def block_pruned(shape, block, density):
    """Random weights [out, in] whose br x bc blocks are nonzero with probability `density`."""
    (o, i), (br, bc) = shape, block
    keep = RNG.random((o // br, i // bc)) < density
    mask = np.repeat(np.repeat(keep, br, axis=0), bc, axis=1)
    return (RNG.standard_normal(shape) * mask).astype(np.float32)


def _check(op, attrs, arrays, const):
    kernel = compile_kernel(op, attrs, [Const(a) if c else a for a, c in zip(arrays, const)], options=SPARSE_ON)
    (actual,) = kernel(arrays)
    opdef = get_op(op)
    (expected,) = opdef.run(arrays, opdef.check_attrs(attrs))
    assert_close(actual, np.asarray(expected), what=f"{op} {attrs}: ")
    return kernel.kernel.schedule


def test_bsr_round_trip_keeps_every_value():
    w = block_pruned((32, 24), (4, 4), 0.3)
    bsr = to_bsr(w, 4, 2)
    dense = np.zeros_like(w)
    for row in range(len(bsr.indptr) - 1):
        for j in range(bsr.indptr[row], bsr.indptr[row + 1]):
            col = bsr.indices[j]
            dense[row * 4:(row + 1) * 4, col * 2:(col + 1) * 2] = bsr.data[j].T
    np.testing.assert_array_equal(dense, w)


@pytest.mark.parametrize("block", [(LANES, 1), (4, 4), (1, 8)])
def test_choose_block_is_the_cheapest_layout(block):
    from nnforge.codegen.sparse import MAX_STORED_FRACTION, _gemm_candidates, _gemm_cost, nonzero_blocks

    w = block_pruned((128, 64), block, 0.1)
    cost = _gemm_cost(LANES)
    nnzb = {b: int(nonzero_blocks(w, *b).sum()) for b in _gemm_candidates(LANES)}
    costs = {b: cost(nz, *b) for b, nz in nnzb.items() if nz * b[0] * b[1] <= MAX_STORED_FRACTION * w.size}
    chosen = choose_block(w, _gemm_candidates(LANES), cost)
    assert costs[chosen] == min(costs.values())
    if block == (LANES, 1):  # the vector-width pattern is stored exactly
        assert chosen == block


def _fc_node(w, rows=1):
    """A Gemm node x[rows, in] @ w[out, in]^T with constant w."""
    attrs = get_op("Gemm").check_attrs({"transB": 1})
    return LowerNode("Gemm", "fc", attrs, [KernelInput(TensorType("float32", (rows, w.shape[1]))),
                                           KernelInput(TensorType.of(w), w)],
                     [TensorType("float32", (rows, w.shape[0]))], CpuTarget.host())


def test_dense_weight_is_left_to_dense_kernels():
    from nnforge.codegen.sparse import bsr_dense

    assert bsr_dense(_fc_node(RNG.standard_normal((64, 32)).astype(np.float32), rows=4)) is None


@pytest.mark.parametrize("rows, k, n, block, attrs, c_shape", [
    (1, 256, 128, (LANES, 1), {"transB": 1}, (128,)),  # classifier layer, batch 1
    (13, 64, 96, (4, 4), {"alpha": 0.5, "beta": 2.0}, (1, 96)),  # row tail of the register tile
    (9, 48, 32, (1, 8), {"transA": 1}, None),
    (3, 40, 16, (1, 1), {"transB": 1}, (16,)),  # unstructured
    (2, 64, 32, (4, 4), {"transB": 1}, (32,)),  # few rows: one accumulator set per block column
])
def test_gemm_sparse_matches_reference(rows, k, n, block, attrs, c_shape):
    w = block_pruned((n, k), block, 0.2)
    b = w if attrs.get("transB") else np.ascontiguousarray(w.T)
    a = RNG.standard_normal((k, rows) if attrs.get("transA") else (rows, k)).astype(np.float32)
    arrays = [a, b] + ([RNG.standard_normal(c_shape).astype(np.float32)] if c_shape else [])
    assert "BSR" in _check("Gemm", attrs, arrays, [False, True, True])


def test_matmul_sparse_folds_batch_dims_into_rows():
    w = block_pruned((64, 32), (LANES, 1), 0.1)
    a = RNG.standard_normal((2, 5, 32)).astype(np.float32)
    assert "BSR" in _check("MatMul", {}, [a, np.ascontiguousarray(w.T)], [False, True])


@pytest.mark.parametrize("n, c, m, hw, block, epilogue, activation", [
    (1, 64, 32, (14, 14), (1, 1), "bias", "Relu"),  # pixel tail (196 = 3 x 64 + 4)
    (2, 32, 48, (8, 8), (4, 4), "", ""),
    (1, 16, 16, (3, 3), (16, 1), "bias", ""),  # fewer pixels than one vector
    (1, 32, 16, (7, 9), (1, 8), "bias+residual", "Relu"),
])
def test_conv1x1_sparse_matches_reference(n, c, m, hw, block, epilogue, activation):
    w = block_pruned((m, c), block, 0.25).reshape(m, c, 1, 1)
    x = RNG.standard_normal((n, c) + hw).astype(np.float32)
    arrays = [x, w] + ([RNG.standard_normal(m).astype(np.float32)] if "bias" in epilogue else [])
    arrays += [RNG.standard_normal((n, m) + hw).astype(np.float32)] if "residual" in epilogue else []
    assert "BSR" in _check("Conv", {"activation": activation}, arrays, [False, True, True, False])


def test_cost_model_picks_sparse_only_when_sparse():
    def chosen(density):
        return rules.select(_fc_node(block_pruned((512, 512), (LANES, 1), density))).rule.family

    assert chosen(0.1) == "sparse"
    assert chosen(0.9) != "sparse"


def fc_and_pointwise_graph():
    """1x1 convs (bias, Relu), a global pool, a Gemm classifier and a MatMul: every sparse kernel."""
    from nnforge.ir import Graph

    g = Graph("pointwise")
    x = g.add_input("x", TensorType("float32", (1, 32, 10, 10)))

    def weight(*shape):
        return g.constant((RNG.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))).astype(np.float32))

    y = g.add_node("Conv", [x, weight(64, 32, 1, 1), weight(64)])[0]
    y = g.add_node("Conv", [g.add_node("Relu", [y])[0], weight(64, 64, 1, 1)])[0]
    y = g.add_node("Reshape", [g.add_node("GlobalAveragePool", [y])[0]], {"shape": (1, 64)})[0]
    y = g.add_node("Relu", [g.add_node("Gemm", [y, weight(128, 64), weight(128)], {"transB": 1})[0]])[0]
    g.set_outputs([g.add_node("MatMul", [y, weight(128, 48)])[0]])
    return g


@pytest.mark.parametrize("spec", ["block:16x1:0.9", "magnitude:0.9"])
def test_pruned_model_compiles_sparse_and_exact(spec):
    """The BSR layout changes no number: the compiled model equals the pruned dense graph."""
    import nnforge
    from nnforge.ir import interpret
    from nnforge.passes import DEFAULT_PIPELINE, run_pipeline
    from nnforge.passes.manager import random_feeds

    g = fc_and_pointwise_graph()
    passes = [f"prune:{spec}", *DEFAULT_PIPELINE]
    feeds = random_feeds(g, seed=1)
    (want,) = interpret(run_pipeline(g, passes), feeds)
    sparse_rules = {"bsr-dense", "bsr-conv1x1"}
    for schedule, expect_sparse in ((None, True), ("sparse=off", False)):
        cm = nnforge.compile(g, passes=passes, schedule=schedule, cache=False)
        (got,) = cm.run(feeds)
        assert_close(got, want, rtol=1e-5, what=f"{spec} {schedule}: ")
        chosen = {r["rule"] for r in cm.report}
        assert bool(chosen & sparse_rules) == expect_sparse, chosen


def test_sparse_weights_of_an_input_model_are_detected():
    """A model that arrives pruned gets BSR kernels with the default pipeline, layer by layer."""
    import nnforge
    from nnforge.ir import interpret
    from nnforge.passes import run_pipeline
    from nnforge.passes.manager import random_feeds
    from nnforge.passes.prune import prune

    g = prune(fc_and_pointwise_graph(), "block:16x1:0.9")
    feeds = random_feeds(g, seed=2)
    cm = nnforge.compile(g, cache=False)
    assert_close(cm.run(feeds)[0], interpret(run_pipeline(g), feeds)[0], rtol=1e-5)
    chosen = {(r["op"], r["rule"]) for r in cm.report if r["op"] in ("Conv", "Gemm", "MatMul")}
    assert chosen == {("Conv", "bsr-conv1x1"), ("Gemm", "bsr-dense"), ("MatMul", "bsr-dense")}
