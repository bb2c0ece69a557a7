"""GPU schedules shared by the CUDA kernels, and running a GPU schedule on the CPU.

`schedule_threads` is the generic GPU schedule: spatial producers are inlined, then
every remaining block's spatial loops are fused and split over (blockIdx.x,
threadIdx.x), one output element per thread (reductions stay serial in the thread).

`without_thread_bindings` turns a scheduled GPU PrimFunc into one LLVM can build:
every thread-bound loop becomes a serial loop. A block's cooperative fetch into shared
memory then fills the whole tile in every iteration of the enclosing thread loops:
redundant but the same values, so the numbers a schedule computes (its tiling,
padding, caches and fused epilogues) are checked on a machine without a GPU.
"""
from __future__ import annotations

import math
import re

from ..schedule_common import DATA_PAR, inline_spatial_producers

THREADS = 256  # threads per block of the generic schedule


def _extent(sch, loop) -> int:
    return int(sch.get(loop).extent)


def bind_flat(sch, loops, threads: int = THREADS):
    """Fuse `loops` and split them over blockIdx.x x threadIdx.x (`threads` per block, fewer
    when the loops are shorter); predicates guard the tail."""
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    threads = min(threads, _extent(sch, fused))
    bx, tx = sch.split(fused, [None, threads])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")


def bind_block_spatial(sch, block, threads: int = THREADS):
    """One thread per element of `block`'s spatial loops; a block without any gets one thread,
    an empty one none."""
    n_spatial = sum(1 for iv in sch.get(block).iter_vars if int(iv.iter_type) == DATA_PAR)
    loops = sch.get_loops(block)
    spatial = loops[:n_spatial] if n_spatial and len(loops) >= n_spatial else []
    if any(_extent(sch, loop) == 0 for loop in spatial):
        return  # an empty output (a zero-size Split piece): the loop nest vanishes when lowered
    if not spatial:
        spatial = [sch.add_unit_loop(block)]
    bind_flat(sch, spatial, threads)


def schedule_threads(sch):
    """The generic GPU schedule (module doc) for a PrimFunc made by `te.create_prim_func`."""
    inline_spatial_producers(sch)
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        bind_block_spatial(sch, block)


def shared_fetch(sch, block, loop, thread_extents, vector: int = 1):
    """Make `block` (a copy into shared memory) a cooperative fetch at `loop`: all threads of
    the GPU block share its iterations, `vector` consecutive elements per thread when it divides.

    Args:
        sch: the schedule.
        block: the cache block (from cache_read, or a stage set to shared scope).
        loop: the reduction loop the tile is fetched in.
        thread_extents: extents of the consuming block's threads, outermost first:
            (threadIdx.y, threadIdx.x) or (threadIdx.z, threadIdx.y, threadIdx.x).
        vector: elements per thread and load (float4 = 4).
    """
    sch.compute_at(block, loop)
    at = sch.get(loop)
    loops = sch.get_loops(block)
    depth = next(i for i, l in enumerate(loops) if sch.get(l).same_as(at)) + 1
    inner = loops[depth:]
    fused = sch.fuse(*inner) if len(inner) > 1 else inner[0]
    threads = list(thread_extents)
    vectorized = vector > 1 and _extent(sch, fused) % (math.prod(threads) * vector) == 0
    _, *thread_loops = sch.split(fused, [None, *threads] + ([vector] if vectorized else []))
    if vectorized:
        sch.vectorize(thread_loops.pop())
    for loop, axis in zip(thread_loops, ("threadIdx.z", "threadIdx.y", "threadIdx.x")[-len(threads):]):
        sch.bind(loop, axis)


_THREAD_LOOP = re.compile(r'T\.thread_binding\(([^,()]+(?:\([^()]*\))?), thread="[^"]+"\)')


def without_thread_bindings(func):
    """`func` (a scheduled GPU PrimFunc) with every thread-bound loop made serial (module doc).

    Args:
        func: a tvm PrimFunc.
    Returns:
        a PrimFunc that LLVM can build and that computes the same outputs.
    """
    import tvm

    text = _THREAD_LOOP.sub(r"T.serial(\1)", func.script())
    return tvm.script.from_source(text)

