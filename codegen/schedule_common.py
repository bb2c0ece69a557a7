"""Schedules shared by many kernels: injective (elementwise, copies) and simple reductions.

Both work on any PrimFunc made by `te.create_prim_func`: intermediate spatial blocks
are inlined into their consumers, then every remaining block is parallelized over
its outer loops and vectorized on its innermost spatial loop.

Before vectorizing, trailing loops are fused as long as every buffer the block touches
indexes them as adjacent contiguous dimensions (or not at all): a [64,7,7] map becomes
one 3136-long loop, while `x[c,h,w] + bias[c]` fuses h and w only, so no vector lane
ever computes a div/mod index.
"""
from __future__ import annotations

import math

import numpy as np
from tvm import tirx

DATA_PAR = 0  # tvm IterVar kind of a spatial axis
PARALLEL_GRAIN = 4096  # below this many output elements a kernel runs single-threaded
MIN_PARALLEL_ROWS = 16  # fewer outer rows than this do not balance over the cores


def lanes_for(target, *dtypes: str) -> int:
    """SIMD lanes of the widest of `dtypes` on `target` (its vector_lanes count fp32)."""
    widest = max(np.dtype(d).itemsize for d in dtypes)
    return max(1, target.vector_lanes * 4 // widest)


def _extent(sch, loop) -> int:
    return int(sch.get(loop).extent)


def inline_spatial_producers(sch):
    """compute_inline every non-output block that has no reduction axes (padding,
    broadcasting, index arithmetic stages), so kernels do not materialize them."""
    for block in list(sch.get_child_blocks(sch.get_sblock("root"))):
        try:
            sch.compute_inline(block)
        except Exception:  # output blocks and reductions cannot be inlined: keep them
            pass


def _uses(expr, var) -> bool:
    return any(v.same_as(var) for v in tirx.analysis.undefined_vars(expr))


def _fusion_is_contiguous(regions, outer, inner, inner_extent: int) -> bool:
    """True when every access either ignores both block vars or reads them as
    `[..., outer, inner, ...]` with the inner buffer dimension exactly `inner_extent` long."""
    for region in regions:
        index = [r.min for r in region.region]
        uses = [i for i, e in enumerate(index) if _uses(e, outer) or _uses(e, inner)]
        if not uses:
            continue
        if len(uses) != 2 or uses[1] != uses[0] + 1:
            return False
        j = uses[0]
        if not (index[j].same_as(outer) and index[j + 1].same_as(inner)
                and int(region.region[j].extent) == 1 and int(region.region[j + 1].extent) == 1
                and int(region.source.shape[j + 1]) == inner_extent):
            return False
    return True


def fusable_trailing_loops(sch, block, loops) -> int:
    """How many of `loops` (a block's leading spatial loops, each bound to one block var)
    counted from the innermost can be fused without div/mod in any buffer index."""
    stmt = sch.get(block)
    if len(stmt.iter_vars) < len(loops):
        return 1
    regions = list(stmt.reads) + list(stmt.writes)
    block_vars = [iv.var for iv in stmt.iter_vars[:len(loops)]]
    count = 1
    for d in range(len(loops) - 1, 0, -1):
        inner_extent = _extent(sch, loops[d])
        if _extent(sch, loops[d - 1]) != 1 and inner_extent != 1 and not _fusion_is_contiguous(
                regions, block_vars[d - 1], block_vars[d], inner_extent):
            break
        count += 1
    return count


def vector_width(extent: int, lanes: int) -> int:
    """The widest power-of-two SIMD width <= lanes dividing `extent` (0 when under 4)."""
    width = lanes
    while width >= 4:
        if extent % width == 0:
            return width
        width //= 2
    return 0


def _largest_divisor_at_most(n: int, bound: int) -> int:
    return next(d for d in range(min(n, bound), 0, -1) if n % d == 0)


def parallel_vectorize(sch, block, lanes: int, spatial: int | None = None):
    """Parallelize the outer and vectorize the innermost of the first `spatial` loops of `block`.

    Trailing loops are first fused where that keeps indices free of div/mod. The fused
    loop is split by the widest SIMD width dividing the innermost original loop (a vector
    that straddles two rows makes TVM emit gathers); an unfused short row (<= 4 vectors)
    is vectorized whole; otherwise the row stays a serial loop, which LLVM's loop
    vectorizer handles (a predicated TVM vector loop also becomes gathers and scatters).

    Args:
        sch: the tvm.s_tir.Schedule.
        block: block handle.
        lanes: SIMD lanes for the dtype (see `lanes_for`).
        spatial: how many leading loops are spatial (default: all loops).
    """
    loops = sch.get_loops(block)[:spatial]
    if not loops:
        return
    total = math.prod(_extent(sch, l) for l in loops)
    n_fused = fusable_trailing_loops(sch, block, loops)
    width = vector_width(_extent(sch, loops[-1]), lanes)
    inner = sch.fuse(*loops[-n_fused:]) if n_fused > 1 else loops[-1]
    outer, row, extent = list(loops[:-n_fused]), None, _extent(sch, inner)
    if width and extent > width:
        row, vector = sch.split(inner, [None, width])
        sch.vectorize(vector)
    elif n_fused == 1 and 1 < extent <= 4 * lanes:
        sch.vectorize(inner)  # short row: one (possibly partial) vector op per register
    else:
        row = inner
        if total >= PARALLEL_GRAIN and math.prod(_extent(sch, l) for l in outer) < MIN_PARALLEL_ROWS:
            # the serial row will be shared out: keep chunks long enough for LLVM to vectorize
            row, _ = sch.split(inner, [None, _largest_divisor_at_most(extent, 4096)])
    if total < PARALLEL_GRAIN:
        return
    if row is not None and math.prod(_extent(sch, l) for l in outer) < MIN_PARALLEL_ROWS:
        outer.append(row)  # too few rows to share out: the cores split the row loop too
    if outer:
        sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])


def schedule_injective(lanes: int):
    """A schedule function (for `make_kernel`) for purely spatial computations."""
    def apply(sch):
        inline_spatial_producers(sch)
        for block in sch.get_child_blocks(sch.get_sblock("root")):
            parallel_vectorize(sch, block, lanes)
    return apply


def schedule_reduction(lanes: int):
    """A schedule function for reductions over trailing axes (te.sum/max over the last loops):
    spatial loops are parallelized; the reduction stays serial per output."""
    def apply(sch):
        inline_spatial_producers(sch)
        for block in sch.get_child_blocks(sch.get_sblock("root")):
            n_spatial = sum(1 for iv in sch.get(block).iter_vars if int(iv.iter_type) == DATA_PAR)
            loops = sch.get_loops(block)
            if n_spatial == len(loops):
                parallel_vectorize(sch, block, lanes)
            elif n_spatial:
                total = math.prod(_extent(sch, l) for l in loops[:n_spatial])
                if total >= 64:
                    sch.parallel(sch.fuse(*loops[:n_spatial]) if n_spatial > 1 else loops[0])
    return apply
