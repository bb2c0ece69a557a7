"""Tile-size choices and the row-accumulator schedule shared by the conv and matmul kernels."""
from __future__ import annotations


def round_up(x: int, m: int) -> int:
    """x rounded up to a multiple of m."""
    return -(-x // m) * m


def pick_tile(extent: int, max_tile: int, min_tile: int = 4) -> int:
    """The tile (min_tile..max_tile, at most `extent`) that pads `extent` the least; larger wins ties.

    Args:
        extent: the loop length to tile.
        max_tile, min_tile: bounds on the tile.
    Returns:
        the tile size.
    """
    hi = min(max_tile, extent)
    candidates = range(min(min_tile, hi), hi + 1)
    return min(candidates, key=lambda r: (round_up(extent, r) - extent, -r))


def vectorize_row(sch, loop, lanes: int):
    """Vectorize `loop` by `lanes` when it divides, whole when it is short, else leave it."""
    extent = int(sch.get(loop).extent)
    if extent % lanes == 0:
        sch.vectorize(sch.split(loop, [None, lanes])[1])
    elif extent <= 4 * lanes:
        sch.vectorize(loop)


def schedule_row_accumulator(sch, block_name: str, lanes: int, epilogue: str | None = None):
    """Schedule a reduction block whose last spatial loop is a contiguous output row.

    The other spatial loops are fused and parallelized; the reduction loops move outside
    the row, which accumulates in a local buffer and is vectorized. An elementwise
    `epilogue` block consuming the result (bias, scaling) is inlined into the write-back.

    Args:
        sch: the tvm.s_tir.Schedule.
        block_name: the reduction block.
        lanes: SIMD lanes for the dtype.
        epilogue: name of an elementwise consumer block to fuse, if any.
    """
    blk = sch.get_sblock(block_name)
    n_spatial = sum(1 for iv in sch.get(blk).iter_vars if int(iv.iter_type) == 0)
    if n_spatial == 0:
        return  # a scalar result: nothing to parallelize or vectorize
    acc = sch.cache_write(blk, 0, "local")
    if epilogue is not None:
        sch.reverse_compute_inline(sch.get_sblock(epilogue))
    loops = sch.get_loops(blk)
    outer, row, reduce = loops[:n_spatial - 1], loops[n_spatial - 1], loops[n_spatial:]
    sch.reorder(*outer, *reduce, row)
    fused = sch.fuse(*outer) if len(outer) > 1 else outer[0] if outer else None
    if fused is not None:
        sch.parallel(fused)
        sch.reverse_compute_at(acc, fused)
    vectorize_row(sch, row, lanes)
    if reduce:
        sch.decompose_reduction(blk, reduce[0])
    acc_loops = sch.get_loops(acc)
    if len(acc_loops) > (fused is not None):  # a unit row leaves the write-back no loop of its own
        vectorize_row(sch, acc_loops[-1], lanes)
