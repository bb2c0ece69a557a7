"""Gemm and MatMul kernels.

The fast rule (float32) sees both ops as a batch of products `rows x K` times
`K x N`: MatMul's batch dimensions of A fold into the rows when B is 2-D (or 1-D),
otherwise they form the batch (attention-style MatMul, with numpy broadcasting).
The product is BLIS-shaped (see `plan_gemm` and `schedule_product`):

    B -> panels PB[b, N/bn, K, bn]      (at compile time when B is constant)
    for (batch, N block, M block) in parallel:
      for K block:                      # B block (kc x group*bn) stays in L2
        for row tile, panel:            # A tile (mr x kc) stays in L1
          mr x bn accumulators += A[r, k] * PB[panel, k, :]   (k unrolled)
      epilogue of the block (alpha, beta*C, drop padded rows/columns)

Padded rows read a clamped (repeated) row of A and padded columns multiply zero
columns of the packed B, so the inner loops have no tail predicates. The fallback
handles every dtype.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .kernel import Kernel, LowerNode
from .rules import make_kernel, rule
from .schedule_tiles import pick_tile, round_up, schedule_row_accumulator

KC_MAX, KC_MIN = 512, 128  # K block: large enough to amortize the accumulator reload per block
B_BLOCK_BYTES = 512 * 1024  # one K block of a group of B panels: L2 resident (Zen1 L2 = 512 KiB)
A_BLOCK_BYTES = 128 * 1024  # the rows of one M block for one K block


@dataclass(frozen=True)
class GemmPlan:
    """Blocking of a `rows x k` times `k x cols` product (see the module doc).

    mr, nv: register tile of mr rows x nv SIMD vectors of `lanes` columns.
    ku: k unroll; kc: K block (ku | kc | k).
    group: panels per N block; row_tiles: register tiles per M block.
    """

    mr: int
    nv: int
    lanes: int
    ku: int
    kc: int
    group: int
    row_tiles: int
    rows_padded: int
    cols_padded: int

    @property
    def bn(self) -> int:
        return self.nv * self.lanes

    def describe(self) -> str:
        return (f"tile {self.mr}x{self.bn}, K block {self.kc}, "
                f"block {self.row_tiles * self.mr}x{self.group * self.bn}")


def _divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, max(1, min(n, limit)) + 1) if n % d == 0)


def plan_gemm(rows: int, cols: int, k: int, lanes: int, cores: int = 1, batch: int = 1) -> GemmPlan:
    """Choose tiles and cache blocks for `batch` products of rows x k times k x cols.

    Args:
        rows, cols, k: the product's dimensions.
        lanes: fp32 SIMD lanes (16: AVX-512 with 32 vector registers; 8: AVX2 with 16).
        cores: threads that share the parallel loop.
        batch: independent products (they are parallel too).
    Returns:
        the GemmPlan.
    """
    max_acc = 24 if lanes >= 16 else 8  # accumulator registers; the rest hold B vectors and the A broadcast
    skinny = max_acc // 3  # rows of one skinny tile (batch-1 inference): few rows, B streamed
    if rows <= 2 * skinny:  # one or two tiles of 1-4 vectors; a GEMV needs 4 to hide the FMA latency
        mr = rows if rows <= skinny else -(-rows // 2)
        nv = min(4, max_acc // mr)
    else:
        cap = max_acc // 2
        mr = pick_tile(rows, cap, cap // 2)
        nv = 4 if 4 * mr <= max_acc else 2  # 8x48 measured slower than 8x32 on AVX-512
    nv = max(1, min(nv, -(-cols // lanes)))
    rows_p, cols_p = round_up(rows, mr), round_up(cols, nv * lanes)
    ku = next(u for u in (4, 2, 1) if k % u == 0)
    kc = k
    if k > KC_MAX and rows_p > mr:  # K blocks keep B in L2 for the next row tile; one tile needs none
        kc = max((d for d in range(ku, KC_MAX + 1, ku) if k % d == 0), default=k)
        kc = kc if kc >= KC_MIN else k
    panels, tiles = cols_p // (nv * lanes), rows_p // mr
    group = _divisor_at_most(panels, B_BLOCK_BYTES // (kc * nv * lanes * 4))
    row_tiles = _divisor_at_most(tiles, A_BLOCK_BYTES // (kc * mr * 4))
    while batch * (panels // group) * (tiles // row_tiles) < 2 * cores and group * row_tiles > 1:
        if group >= row_tiles:  # split the larger block so that every core gets work
            group = _divisor_at_most(panels, group - 1)
        else:
            row_tiles = _divisor_at_most(tiles, row_tiles - 1)
    return GemmPlan(mr, nv, lanes, ku, kc, group, row_tiles, rows_p, cols_p)


def pack_columns(b: np.ndarray, bn: int, cols_padded: int) -> np.ndarray:
    """[..., k, cols] -> [..., cols_padded/bn, k, bn] panels, zero-padded columns."""
    k, cols = b.shape[-2:]
    b = np.pad(b, [(0, 0)] * (b.ndim - 1) + [(0, cols_padded - cols)])
    b = b.reshape(b.shape[:-1] + (cols_padded // bn, bn))
    return np.ascontiguousarray(np.moveaxis(b, -2, -3))


def pack_stage(b_at: Callable, b_batch: int, k: int, cols: int, p: GemmPlan, dtype: str):
    """TE stage packing a run-time B: b_at(bb, kk, j) -> panels [b_batch, N/bn, k, bn]."""
    from tvm import te, tirx

    def pack(bb, jo, kk, ji):
        j = jo * p.bn + ji
        return tirx.if_then_else(j < cols, b_at(bb, kk, tirx.min(j, cols - 1)), tirx.const(0, dtype))
    return te.compute((b_batch, p.cols_padded // p.bn, k, p.bn), pack, name="b_pack")


def product_stage(a_at: Callable, pb_at: Callable, batch: int, rows: int, k: int, p: GemmPlan):
    """TE stage prod[batch, rows_padded, cols_padded] = A x B.

    Args:
        a_at(bt, r, kk): A's element (r < rows: padded rows are clamped here).
        pb_at(bt, panel, kk, lane): the packed B's element.
    """
    from tvm import te, tirx

    kk = te.reduce_axis((0, k), name="k")
    clamp = (lambda r: r) if p.rows_padded == rows else (lambda r: tirx.min(r, rows - 1))
    return te.compute((batch, p.rows_padded, p.cols_padded),
                      lambda bt, r, j: te.sum(a_at(bt, clamp(r), kk) * pb_at(bt, j // p.bn, kk, j % p.bn), axis=kk),
                      name="product")


def schedule_product(sch, p: GemmPlan, epilogue: str | None = None, pack: str | None = None):
    """Schedule the "product" block of `product_stage` with plan `p` (module doc).

    Args:
        sch: the tvm.s_tir.Schedule.
        p: the plan the stage was built with.
        epilogue: a consumer of the product computed per parallel block, if any.
        pack: a run-time B packing block to parallelize, if any.
    """
    blk = sch.get_sblock("product")
    bt, r, j, k = sch.get_loops(blk)
    i0, i1, ri = sch.split(r, [None, p.row_tiles, p.mr])
    j0, j1, jv, jl = sch.split(j, [None, p.group, p.nv, p.lanes])
    kb, ko, ki = sch.split(k, [None, p.kc // p.ku, p.ku])
    # the accumulators live in the product buffer across the k loop: LLVM keeps them in registers
    sch.reorder(bt, j0, i0, kb, i1, j1, ko, ki, ri, jv, jl)
    for loop in (ki, ri, jv):
        sch.unroll(loop)
    sch.vectorize(jl)
    par = sch.fuse(bt, j0, i0)
    sch.parallel(par)
    sch.decompose_reduction(blk, kb)
    sch.vectorize(sch.get_loops(sch.get_sblock("product_init"))[-1])
    if epilogue is not None:
        sch.reverse_compute_at(sch.get_sblock(epilogue), par)
        vectorize_inner(sch, sch.get_loops(sch.get_sblock(epilogue))[-1], p.lanes)
    if pack is not None:
        loops = sch.get_loops(sch.get_sblock(pack))
        sch.parallel(sch.fuse(*loops[:2]))
        sch.vectorize(loops[-1])


def vectorize_inner(sch, loop, lanes: int):
    """Vectorize `loop` by `lanes` when that divides its extent."""
    extent = sch.get(loop).extent
    if hasattr(extent, "value") and extent.value % lanes == 0:
        sch.vectorize(sch.split(loop, [None, lanes])[1])


# ---------------------------------------------------------------- views of the two ops

@dataclass
class MatmulView:
    """A Gemm or MatMul node as `batch` products rows x k times k x cols.

    a_at(a, bt, r, kk): element (r, kk) of product bt's left operand over placeholder `a`.
    b_batch: B matrices; b_of(bt): which one product bt uses (broadcasting).
    b_matrices(data): the constant B as a numpy [b_batch, k, cols] array.
    b_at(b, bb, kk, j): element (kk, j) of B matrix bb over placeholder `b`.
    out_index(idx): output index -> (bt, row, col) of the product.
    epilogue(value, idx): the output element from the product element (alpha, C...).
    """

    batch: int
    rows: int
    k: int
    cols: int
    a_at: Callable
    b_batch: int
    b_of: Callable
    b_matrices: Callable
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
        1, rows, k, cols,
        a_at=lambda a, bt, r, kk: a[kk, r] if ta else a[r, kk],
        b_batch=1, b_of=lambda bt: 0,
        b_matrices=lambda data: (data.T if tb else data)[None],
        b_at=lambda b, bb, kk, j: b[j, kk] if tb else b[kk, j],
        out_index=lambda idx: (0, idx[0], idx[1]),
        extra_inputs=extra, epilogue=epilogue)


def _unravel(flat, shape):
    idx = []
    for d in reversed(shape):
        idx.append(flat % d)
        flat = flat // d
    return tuple(reversed(idx))


def _ravel(idx, shape):
    flat = 0
    for d, i in zip(shape, idx):
        flat = flat * d + i
    return flat


def _matmul_view(n: LowerNode) -> MatmulView:
    """numpy matmul: A's batch dims fold into rows when B is 1-D/2-D, else they are the batch."""
    a_shape, b_shape = n.inputs[0].type.shape, n.inputs[1].type.shape
    k, cols = a_shape[-1], (b_shape[-1] if len(b_shape) > 1 else 1)
    b_vec, a_vec = len(b_shape) == 1, len(a_shape) == 1
    b_mat = (lambda b, kk, j: b[kk]) if b_vec else (lambda b, kk, j: b[kk, j])
    if len(b_shape) <= 2:
        lead = a_shape[:-1]  # A's leading dims (batch and M) fold into rows

        def out_index(idx):
            return 0, _ravel(idx if b_vec else idx[:-1], lead), (0 if b_vec else idx[-1])
        return MatmulView(
            1, math.prod(lead), k, cols,
            a_at=lambda a, bt, r, kk: a[_unravel(r, lead) + (kk,)],
            b_batch=1, b_of=lambda bt: 0,
            b_matrices=lambda data: (data[:, None] if b_vec else data)[None],
            b_at=lambda b, bb, kk, j: b_mat(b, kk, j),
            out_index=out_index, extra_inputs=[], epilogue=lambda v, idx: v)
    a_batch, b_bshape = a_shape[:-2], b_shape[:-2]
    out_batch = tuple(np.broadcast_shapes(a_batch, b_bshape))
    rows = 1 if a_vec else a_shape[-2]

    def a_at(a, bt, r, kk):
        if a_vec:
            return a[kk]
        return a[_broadcast_index(a_batch, _unravel(bt, out_batch)) + (r, kk)]

    def out_index(idx):
        nb = len(out_batch)
        return _ravel(idx[:nb], out_batch), (0 if a_vec else idx[nb]), idx[-1]

    return MatmulView(
        math.prod(out_batch), rows, k, cols, a_at=a_at,
        b_batch=math.prod(b_bshape),
        b_of=lambda bt: _ravel(_broadcast_index(b_bshape, _unravel(bt, out_batch)), b_bshape),
        b_matrices=lambda data: data.reshape((-1,) + b_shape[-2:]),
        b_at=lambda b, bb, kk, j: b[_unravel(bb, b_bshape) + (kk, j)],
        out_index=out_index, extra_inputs=[], epilogue=lambda v, idx: v)


def matmul_view(n: LowerNode) -> MatmulView | None:
    """The node as a MatmulView; None when it is not a float32 product with a non-empty result."""
    if n.outputs[0].dtype != "float32":
        return None
    v = _gemm_view(n) if n.op == "Gemm" else _matmul_view(n)
    return None if 0 in (v.k, v.rows, v.cols, v.batch) else v


def _packed_product(n: LowerNode, v: MatmulView) -> Kernel:
    """Build and schedule the tiled product of view `v` for node `n`."""
    from tvm import te

    p = plan_gemm(v.rows, v.cols, v.k, n.target.vector_lanes, n.target.num_cores, v.batch)
    a = n.placeholder(0, "a")
    if n.inputs[1].is_constant:
        b_arg = pack_columns(v.b_matrices(n.inputs[1].data), p.bn, p.cols_padded)
        b_ph = pb = n.constant_placeholder(b_arg, "b_packed")
    else:
        b_ph, b_arg = n.placeholder(1, "b"), 1
        pb = pack_stage(lambda bb, kk, j: v.b_at(b_ph, bb, kk, j), v.b_batch, v.k, v.cols, p, b_ph.dtype)
    prod = product_stage(lambda bt, r, kk: v.a_at(a, bt, r, kk),
                         lambda bt, jo, kk, ji: pb[v.b_of(bt), jo, kk, ji], v.batch, v.rows, v.k, p)
    out = te.compute(n.outputs[0].shape, lambda *idx: v.epilogue(prod[v.out_index(idx)], idx), name="epilogue")
    ins = [a, b_ph] + [ph for ph, _ in v.extra_inputs]
    args = [0, b_arg] + [i for _, i in v.extra_inputs]
    # the epilogue runs per parallel block only when its index maps onto the product's affinely
    per_block = len(n.outputs[0].shape) == 2 and v.batch == 1

    def schedule(sch):
        schedule_product(sch, p, "epilogue" if per_block else None,
                         None if n.inputs[1].is_constant else "b_pack")
        if not per_block:
            loops = sch.get_loops(sch.get_sblock("epilogue"))
            if loops:
                sch.parallel(loops[0])

    kind = "gemv" if v.rows == 1 else "gemm"
    desc = (f"{kind} packed{' batched' if v.batch > 1 else ''}: {p.describe()}, "
            f"{'pre-packed' if n.inputs[1].is_constant else 'packed'} B")
    return make_kernel(ins, [out], schedule, args, desc)


@rule("Gemm", "MatMul", efficiency=0.8)
def matmul_packed(n: LowerNode) -> Kernel | None:
    """float32 Gemm/MatMul: packed, register-tiled, cache-blocked product."""
    v = matmul_view(n)
    return None if v is None else _packed_product(n, v)


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
        k_len, a_at, b_at, extra = v.k, (lambda idx, kk: v.a_at(a, 0, idx[0], kk)), \
            (lambda idx, kk: v.b_at(b, 0, kk, idx[1])), v.extra_inputs
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
