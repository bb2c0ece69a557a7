"""Products on the GPU: shared-memory tiled, register-blocked GEMM.

A product is `batch` matrices rows x k times k x cols (gemm.MatmulView: Gemm, MatMul,
and conv2d.py's implicit GEMM). Its operands are padded to whole tiles in TE, so the
hot loop has no predicates:

    a_tile[bt, rows_p, k_p]   = A (0 outside)         computed into shared memory per k step
    b[b_batch, k_p, cols_p]   = B (0 outside)         packed at compile time when constant
    product[bt, i, j]         = sum_k a_tile * b
    epilogue(out index)       = f(product[...])       bias, alpha/beta C, activation, layout

Schedule: GPU block (blockIdx.z = batch, y, x) = bm x bn outputs; thread (threadIdx.y, x) =
tm x tn accumulators in registers; per bk-long k step both tiles are fetched into shared
memory by all threads (B with float4 loads). When the output index maps affinely onto the
product's (2-D Gemm/MatMul), each thread applies the epilogue to its own accumulators and
the product never reaches global memory. When it does not, the region analysis cannot invert
the div/mod reindexing (reverse_compute_at of an epilogue over the output's index space),
so a caller whose output is a bijection of the product (`out_at`: the implicit GEMM's NCHW
output) gets the epilogue computed over the product's index space instead, its output buffer
re-laid out to the node's shape with `transform_layout`: each thread then writes its own
outputs, at div/mod addresses, straight from registers. Otherwise (MatMul batch dims folded
into rows) the epilogue runs as a second elementwise kernel: one extra pass over the output.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..gemm import MatmulView, matmul_view
from ..kernel import Kernel, LowerNode
from ..rules import make_kernel
from ..schedule_tiles import round_up
from .registry import cuda_rule
from .schedule_gpu import bind_block_spatial, shared_fetch

BK = 16  # k step: one shared-memory tile of A (bm x BK) and of B (BK x bn)


@dataclass(frozen=True)
class GpuGemmPlan:
    """Tiles of the product: bm x bn outputs per GPU block, tm x tn per thread."""

    bm: int
    bn: int
    tm: int
    tn: int
    bk: int = BK

    @property
    def threads(self) -> tuple:
        """(threadIdx.y, threadIdx.x) extents."""
        return self.bm // self.tm, self.bn // self.tn

    def describe(self) -> str:
        ty, tx = self.threads
        return f"block {self.bm}x{self.bn}, thread {self.tm}x{self.tn}, k step {self.bk}, {ty * tx} threads"


def _pow2_at_least(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


def plan_gpu_gemm(rows: int, cols: int) -> GpuGemmPlan:
    """Tiles for a rows x cols product: 64x64 blocks of 4x4 per thread (256 threads) when
    large; narrower blocks for few rows (batch-1 layers) keep 256 threads busy on columns."""
    if rows >= 64:
        return GpuGemmPlan(64, 64, 4, 4)
    if rows >= 16:
        bm = _pow2_at_least(rows)
        return GpuGemmPlan(bm, 64, bm // 16, 4)
    bm = _pow2_at_least(rows)
    return GpuGemmPlan(bm, max(32, 256 // bm), 1, 1)


def tiled_product(n: LowerNode, v: MatmulView, a, out_shape, description: str,
                  extra_inputs=(), extra_args=(), fuse_epilogue: bool = False, out_at=None) -> Kernel:
    """The kernel computing `v` for node `n` with the tiled schedule (module doc).

    Args:
        n: the node.
        v: the product; v.a_at reads placeholder `a` (node input 0), v.b_* node input 1.
        a: the placeholder of node input 0.
        out_shape: the node's output shape (the epilogue's domain).
        description: schedule description prefix.
        extra_inputs, extra_args: further placeholders the epilogue reads, and their Kernel.args.
        fuse_epilogue: the epilogue's index is the product's (bt = 0, out[i, j] <- product[0, i, j]).
        out_at: product index (bt, r, j) -> output index, a bijection onto `out_shape` (the
            implicit GEMM's NCHW output); the epilogue is then computed over the product's index
            space and its output buffer re-laid out to `out_shape`, so it fuses too (module doc).
    Returns:
        the Kernel.
    """
    from tvm import te, tirx

    p = plan_gpu_gemm(v.rows, v.cols)
    rows_p, cols_p, k_p = round_up(v.rows, p.bm), round_up(v.cols, p.bn), round_up(v.k, p.bk)
    dtype = n.outputs[0].dtype
    zero = tirx.const(0, dtype)

    def a_value(bt, r, kk):
        inside = tirx.all(r < v.rows, kk < v.k)
        return tirx.if_then_else(inside, v.a_at(a, bt, tirx.min(r, v.rows - 1), tirx.min(kk, v.k - 1)), zero)
    a_tile = te.compute((v.batch, rows_p, k_p), a_value, name="a_tile")
    if n.inputs[1].is_constant:
        mats = v.b_matrices(n.inputs[1].data).astype(dtype)
        b_arg = np.ascontiguousarray(np.pad(mats, [(0, 0), (0, k_p - v.k), (0, cols_p - v.cols)]))
        b_ph = b = n.constant_placeholder(b_arg, "b_padded")
    else:
        b_ph, b_arg = n.placeholder(1, "b"), 1

        def b_value(bb, kk, j):
            inside = tirx.all(kk < v.k, j < v.cols)
            return tirx.if_then_else(inside, v.b_at(b_ph, bb, tirx.min(kk, v.k - 1), tirx.min(j, v.cols - 1)), zero)
        b = te.compute((v.b_batch, k_p, cols_p), b_value, name="b_tile")
    kk = te.reduce_axis((0, k_p), name="k")
    prod = te.compute((v.batch, rows_p, cols_p),
                      lambda bt, r, j: te.sum(a_tile[bt, r, kk] * b[v.b_of(bt), kk, j], axis=kk), name="product")
    if out_at is None:
        out = te.compute(out_shape, lambda *idx: v.epilogue(prod[v.out_index(idx)], idx), name="epilogue")
    else:
        out = te.compute((v.batch, v.rows, v.cols), lambda bt, r, j: v.epilogue(prod[bt, r, j], out_at(bt, r, j)),
                         name="epilogue")
        fuse_epilogue = True
    runtime_b = not n.inputs[1].is_constant
    kernel = make_kernel([a, b_ph, *extra_inputs], [out],
                         lambda sch: schedule_tiled_product(sch, p, runtime_b, fuse_epilogue, out_at),
                         [0, b_arg, *extra_args],
                         f"{description}: {p.describe()}" + (", fused epilogue" if fuse_epilogue else ""))
    kernel.extra["flops"] = 2 * v.batch * rows_p * cols_p * k_p
    return kernel


def tile_product_block(sch, blk, p: GpuGemmPlan, operands):
    """Tile a product block with loops (batch, rows, cols, k) by plan `p` (module doc) and fetch
    its two operands into shared memory per k step.

    Args:
        sch: the schedule.
        blk: the product block.
        operands: per read operand (0: A, 1: B), the name of the stage computing its tile
            (made shared-scope and computed per k step) or None (cache_read of the buffer).
    Returns:
        (k outer loop, threadIdx.x loop, row tile loop, column tile loop).
    """
    bt, r, j, k = sch.get_loops(blk)
    ty_n, tx_n = p.threads
    by, ty, ti = sch.split(r, [None, ty_n, p.tm])
    bx, tx, tj = sch.split(j, [None, tx_n, p.tn])
    ko, ki = sch.split(k, [None, p.bk])
    sch.reorder(bt, by, bx, ty, tx, ko, ki, ti, tj)
    # threads first: the shared tiles computed at ko then cover the whole GPU block
    for loop, axis in ((bt, "blockIdx.z"), (by, "blockIdx.y"), (bx, "blockIdx.x"),
                       (ty, "threadIdx.y"), (tx, "threadIdx.x")):
        sch.bind(loop, axis)
    for index, stage in enumerate(operands):
        if stage is None:
            tile = sch.cache_read(blk, index, "shared")
        else:
            tile = sch.get_sblock(stage)
            sch.set_scope(tile, 0, "shared")
        shared_fetch(sch, tile, ko, p.threads, vector=4 if index == 1 else 1)  # B rows are contiguous
    return ko, tx, ti, tj


def schedule_tiled_product(sch, p: GpuGemmPlan, runtime_b: bool, fuse_epilogue: bool, out_at=None):
    """Schedule the stages of `tiled_product` with plan `p` (module doc); `out_at` (see
    tiled_product) re-lays out the epilogue's output buffer from product to output indices."""
    if out_at is not None:  # a bijection: the function's output keeps the node's shape
        sch.transform_layout("epilogue", ("write", 0), out_at)
    blk = sch.get_sblock("product")
    ko, tx, ti, tj = tile_product_block(sch, blk, p, ["a_tile", "b_tile" if runtime_b else None])
    epilogue = sch.get_sblock("epilogue")
    if fuse_epilogue:  # accumulators stay in registers; each thread finishes its own outputs
        sch.set_scope(blk, 0, "local")
        sch.reverse_compute_at(epilogue, tx)
    else:
        sch.reverse_compute_at(sch.cache_write(blk, 0, "local"), tx)
        bind_block_spatial(sch, epilogue)
    sch.unroll(ti)
    sch.unroll(tj)
    sch.decompose_reduction(blk, ko)


@cuda_rule("Gemm", "MatMul", name="gpu-gemm-tiled", family="gemm", efficiency=0.5)
def gemm_tiled(n: LowerNode) -> Kernel | None:
    """float32 Gemm/MatMul: shared-memory tiled, register-blocked product."""
    v = matmul_view(n)
    if v is None or gemv_applies(n, v):  # batch-1 layers: gemv_rows keeps every SM busy
        return None
    a = n.placeholder(0, "a")
    extra = [ph for ph, _ in v.extra_inputs]
    return tiled_product(n, v, a, n.outputs[0].shape, "gpu gemm tiled", extra, [i for _, i in v.extra_inputs],
                         fuse_epilogue=len(n.outputs[0].shape) == 2 and v.batch == 1)


GEMV_THREADS = 256  # threads per output element (the k loop is shared out, then tree-reduced)


def schedule_gemv(sch):
    """One GPU block per output element of `gemv_rows`: its threads split the k loop (coalesced
    reads of the weight row) and combine their partial sums with a cross-thread reduction;
    the epilogue is computed in the same block."""
    out = sch.get_sblock("epilogue")
    loops = sch.get_loops(out)
    element = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    bx, tx = sch.split(element, [None, 1])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    prod = sch.get_sblock("product")
    sch.compute_at(prod, bx)
    sch.set_scope(prod, 0, "shared")  # the block's one sum, read by the epilogue
    _, k_tx = sch.split(sch.get_loops(prod)[-1], [None, GEMV_THREADS])
    sch.bind(k_tx, "threadIdx.x")


def gemv_applies(n: LowerNode, v: MatmulView) -> bool:
    """True for one product of a single row with a constant B (what `gemv_rows` takes)."""
    return v.rows == 1 and v.batch == 1 and n.inputs[1].is_constant


@cuda_rule("Gemm", "MatMul", name="gpu-gemv", family="gemv", efficiency=0.5)
def gemv_rows(n: LowerNode) -> Kernel | None:
    """float32 product with one row (batch-1 fully connected layers) and a constant B: a
    block per output element, cross-thread reduction over k (see `schedule_gemv`)."""
    from tvm import te

    v = matmul_view(n)
    if v is None or not gemv_applies(n, v):
        return None
    a = n.placeholder(0, "a")
    weight = np.ascontiguousarray(v.b_matrices(n.inputs[1].data)[0].T.astype(n.outputs[0].dtype))
    w = n.constant_placeholder(weight, "b_rows")  # [cols, k]: each output reads one contiguous row
    kk = te.reduce_axis((0, v.k), name="k")
    prod = te.compute((1, 1, v.cols), lambda bt, r, j: te.sum(v.a_at(a, bt, r, kk) * w[j, kk], axis=kk),
                      name="product")
    out = te.compute(n.outputs[0].shape, lambda *idx: v.epilogue(prod[v.out_index(idx)], idx), name="epilogue")
    extra = [ph for ph, _ in v.extra_inputs]
    return make_kernel([a, w, *extra], [out], schedule_gemv, [0, weight, *[i for _, i in v.extra_inputs]],
                       f"gpu gemv: one block of {GEMV_THREADS} threads per output, cross-thread sum, fused epilogue")
