"""Gemm and MatMul kernels.

The fast rule (float32, 2-D right operand) sees both ops as one product
`rows x K` times `K x N` (MatMul's batch dimensions of A fold into the rows), with B
packed into column panels `PB[N/bn, K, bn]`: at compile time when B is constant,
otherwise by a stage of the kernel. Each register tile is `mr` rows x `bn` columns of
vector accumulators (cookbook recipe 1). A one-row product (the fully-connected layers
of batch-1 CNNs) is memory bound: there the tile is one row of 4 vectors and the
parallel loop runs over panels, so every core streams its own contiguous panels of
weights. alpha, beta and C are applied by an epilogue stage that also drops padded
columns. The fallback handles every dtype and batched right operands.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .kernel import Kernel, LowerNode
from .rules import make_kernel, rule
from .schedule_tiles import pick_tile, round_up, schedule_row_accumulator

K_UNROLL = 4
MAX_TILE_ROWS = 6


@dataclass
class MatmulView:
    """A Gemm or MatMul node as a 2-D product rows x k times k x cols.

    a_at(r, kk): element (r, kk) of the left operand as a TE expression over placeholder `a`.
    b_matrix(data): the constant right operand as a numpy [k, cols] array.
    b_at(b, kk, j): element (kk, j) of the right operand over placeholder `b`.
    out_index(idx): output index -> (row, col) of the product.
    epilogue(value, idx): the output element from the product element (alpha, C...).
    """

    rows: int
    k: int
    cols: int
    a_at: Callable
    b_matrix: Callable
    b_at: Callable
    out_index: Callable
    extra_inputs: list  # (placeholder, node input index) of inputs read by the epilogue
    epilogue: Callable


def _gemm_view(n: LowerNode) -> MatmulView:
    a_shape, b_shape = n.inputs[0].type.shape, n.inputs[1].type.shape
    ta, tb = n.attrs["transA"], n.attrs["transB"]
    alpha, beta = n.attrs["alpha"], n.attrs["beta"]
    rows, k = a_shape[::-1] if ta else a_shape
    cols = b_shape[0] if tb else b_shape[1]
    extra, c = [], None
    if len(n.inputs) > 2 and beta != 0.0:
        c = n.placeholder(2, "c")
        extra.append((c, 2))
    c_shape = n.inputs[2].type.shape if c is not None else ()

    dtype = n.outputs[0].dtype

    def epilogue(v, idx):
        from tvm import tirx

        if alpha != 1.0:
            v = v * tirx.const(alpha, dtype)
        if c is None:
            return v
        cv = c[_broadcast_index(c_shape, idx)]
        return v + (cv if beta == 1.0 else cv * tirx.const(beta, dtype))

    return MatmulView(
        rows, k, cols,
        a_at=lambda a, r, kk: a[kk, r] if ta else a[r, kk],
        b_matrix=lambda data: data.T if tb else data,
        b_at=lambda b, kk, j: b[j, kk] if tb else b[kk, j],
        out_index=lambda idx: (idx[0], idx[1]),
        extra_inputs=extra, epilogue=epilogue)


def _matmul_view(n: LowerNode) -> MatmulView | None:
    """MatMul with a 1-D or 2-D right operand; None when B is batched."""
    a_shape, b_shape = n.inputs[0].type.shape, n.inputs[1].type.shape
    if len(b_shape) > 2:
        return None
    k = a_shape[-1]
    batch = a_shape[:-1]  # A's leading dims (batch and M) fold into rows
    rows, cols = math.prod(batch), (b_shape[1] if len(b_shape) == 2 else 1)

    def a_at(a, r, kk):
        idx, rest = [], r
        for d in reversed(batch):
            idx.append(rest % d)
            rest = rest // d
        return a[tuple(reversed(idx)) + (kk,)]

    def out_index(idx):
        row_idx = idx if len(b_shape) == 1 else idx[:-1]
        r = 0
        for d, i in zip(batch, row_idx):
            r = r * d + i
        return r, (idx[-1] if len(b_shape) == 2 else 0)

    return MatmulView(
        rows, k, cols, a_at=a_at,
        b_matrix=lambda data: data if data.ndim == 2 else data[:, None],
        b_at=lambda b, kk, j: b[kk, j] if len(b_shape) == 2 else b[kk],
        out_index=out_index, extra_inputs=[], epilogue=lambda v, idx: v)


@dataclass(frozen=True)
class GemmPlan:
    """Register tile of the packed product: mr rows x bn columns (bn a multiple of the SIMD width)."""

    mr: int
    bn: int
    rows_padded: int
    cols_padded: int


def plan_gemm(rows: int, cols: int, lanes: int) -> GemmPlan:
    """Choose the register tile for a rows x cols product on a `lanes`-wide SIMD target."""
    if rows == 1:
        bn = 4 * lanes  # 4 independent accumulators per panel hide the FMA latency
        mr = 1
    else:
        bn = 2 * lanes if cols > lanes else lanes
        mr = rows if rows <= MAX_TILE_ROWS else pick_tile(rows, MAX_TILE_ROWS)
    bn = min(bn, round_up(cols, lanes))
    return GemmPlan(mr, bn, round_up(rows, mr), round_up(cols, bn))


def pack_columns(b: np.ndarray, bn: int, cols_padded: int) -> np.ndarray:
    """[k, cols] -> [cols_padded/bn, k, bn] panels, zero-padded columns."""
    k, cols = b.shape
    b = np.pad(b, ((0, 0), (0, cols_padded - cols)))
    return np.ascontiguousarray(b.reshape(k, cols_padded // bn, bn).transpose(1, 0, 2))


def _packed_product(n: LowerNode, v: MatmulView):
    """Build and schedule the packed product of view `v` for node `n`."""
    from tvm import te, tirx

    p = plan_gemm(v.rows, v.cols, n.target.vector_lanes)
    a = n.placeholder(0, "a")
    panels = p.cols_padded // p.bn
    if n.inputs[1].is_constant:
        packed = pack_columns(v.b_matrix(n.inputs[1].data), p.bn, p.cols_padded)
        b_ph = n.constant_placeholder(packed, "b_packed")
        b_arg, pb = packed, b_ph
    else:
        b_ph, b_arg = n.placeholder(1, "b"), 1

        def pack(jo, kk, ji):
            j = jo * p.bn + ji
            return tirx.if_then_else(j < v.cols, v.b_at(b_ph, kk, j), tirx.const(0, b_ph.dtype))
        pb = te.compute((panels, v.k, p.bn), pack, name="b_pack")

    def a_value(r, kk):
        if p.rows_padded == v.rows:
            return v.a_at(a, r, kk)
        return tirx.if_then_else(r < v.rows, v.a_at(a, tirx.min(r, v.rows - 1), kk), tirx.const(0, a.dtype))

    kk = te.reduce_axis((0, v.k), name="k")
    prod = te.compute((p.rows_padded, p.cols_padded),
                      lambda r, j: te.sum(a_value(r, kk) * pb[j // p.bn, kk, j % p.bn], axis=kk), name="product")

    def out_value(*idx):
        r, j = v.out_index(idx)
        return v.epilogue(prod[r, j], idx)

    out = te.compute(n.outputs[0].shape, out_value, name="epilogue")
    ins = [a, b_ph] + [ph for ph, _ in v.extra_inputs]
    args = [0, b_arg] + [i for _, i in v.extra_inputs]

    def schedule(sch):
        blk = sch.get_sblock("product")
        acc = sch.cache_write(blk, 0, "local")
        r, j, k_ = sch.get_loops(blk)
        ro, ri = sch.split(r, [None, p.mr])
        jo, ji = sch.split(j, [None, p.bn])
        ko, ki = sch.split(k_, [None, K_UNROLL]) if v.k % K_UNROLL == 0 else (k_, None)
        order = [jo, ro, ko] + ([ki] if ki is not None else []) + [ri, ji]
        sch.reorder(*order)
        sch.reverse_compute_at(acc, ro)
        if ki is not None:
            sch.unroll(ki)
        sch.unroll(ri)
        sch.vectorize(ji)
        sch.parallel(sch.fuse(jo, ro))
        sch.decompose_reduction(blk, ko)
        sch.vectorize(sch.get_loops(acc)[-1])
        if not n.inputs[1].is_constant:
            loops = sch.get_loops(sch.get_sblock("b_pack"))
            sch.parallel(loops[0])
            sch.vectorize(loops[-1])
        ep_loops = sch.get_loops(sch.get_sblock("epilogue"))
        if ep_loops:
            sch.parallel(ep_loops[0])

    desc = (f"{'gemv' if v.rows == 1 else 'gemm'} packed B panels of {p.bn}, tile {p.mr}x{p.bn}, "
            f"{'pre-packed' if n.inputs[1].is_constant else 'packed'} B")
    return make_kernel(ins, [out], schedule, args, desc)


@rule("Gemm", "MatMul")
def matmul_packed(n: LowerNode) -> Kernel | None:
    """float32 Gemm/MatMul with a 2-D (or 1-D) right operand: packed, register-tiled product."""
    if n.outputs[0].dtype != "float32":
        return None
    v = _gemm_view(n) if n.op == "Gemm" else _matmul_view(n)
    if v is None or v.k == 0 or v.rows == 0 or v.cols == 0:
        return None
    return _packed_product(n, v)


def _broadcast_index(shape, out_batch_idx):
    """Index into a batch shape that broadcasts (right-aligned) to the output's batch."""
    lead = len(out_batch_idx) - len(shape)
    return tuple(0 if d == 1 else out_batch_idx[lead + i] for i, d in enumerate(shape))


@rule("Gemm", "MatMul", fallback=True)
def matmul_generic(n: LowerNode) -> Kernel:
    """Any Gemm/MatMul: a direct product with a row accumulator, parallel over the other
    output dims (numpy matmul broadcasting and 1-D promotion; Gemm alpha/beta/C)."""
    from tvm import te, tirx

    a, b = n.placeholder(0, "a"), n.placeholder(1, "b")
    a_shape, b_shape = n.inputs[0].type.shape, n.inputs[1].type.shape
    out_shape = n.outputs[0].shape
    dtype = n.outputs[0].dtype
    if n.op == "Gemm":
        v = _gemm_view(n)
        k_len, a_at, b_at, extra = v.k, (lambda idx, kk: v.a_at(a, idx[0], kk)), \
            (lambda idx, kk: v.b_at(b, kk, idx[1])), v.extra_inputs
        epilogue = v.epilogue
    else:
        k_len, extra = a_shape[-1], []
        a_mat, b_vec = len(a_shape) > 1, len(b_shape) == 1
        batch_rank = len(out_shape) - int(a_mat) - int(not b_vec)

        def a_at(idx, kk):
            batch = _broadcast_index(a_shape[:-2], idx[:batch_rank]) if len(a_shape) > 2 else ()
            return a[batch + ((idx[batch_rank],) if a_mat else ()) + (kk,)]

        def b_at(idx, kk):
            if b_vec:
                return b[kk]
            batch = _broadcast_index(b_shape[:-2], idx[:batch_rank]) if len(b_shape) > 2 else ()
            return b[batch + (kk, idx[-1])]

        epilogue = lambda val, idx: val  # noqa: E731
    kk = te.reduce_axis((0, k_len), name="k")
    if k_len == 0:
        prod = te.compute(out_shape, lambda *idx: tirx.const(0, dtype), name="product")
    else:
        prod = te.compute(out_shape, lambda *idx: te.sum(a_at(idx, kk) * b_at(idx, kk), axis=kk), name="product")
    has_epilogue = n.op == "Gemm"
    out = te.compute(out_shape, lambda *idx: epilogue(prod(*idx), idx), name="epilogue") if has_epilogue else prod
    ins = [a, b] + [ph for ph, _ in extra]
    args = [0, 1] + [i for _, i in extra]

    def schedule(sch):
        if k_len:
            schedule_row_accumulator(sch, "product", n.target.vector_lanes, "epilogue" if has_epilogue else None)

    return make_kernel(ins, [out], schedule, args, "matmul generic (row accumulator)")
