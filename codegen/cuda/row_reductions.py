"""Row-wise normalizations on the GPU (Softmax, LogSoftmax, LayerNormalization over the
last axis): one GPU block per row, cross-thread reductions.

Each row's statistics (max and sum of exp(x - max); mean and sum of squared deviations)
and its outputs are computed by one GPU block of THREADS threads: each reduction is split
over threadIdx.x (TVM lowers it to a warp-shuffle tree), then the threads write the row.
LayerNormalization reuses the CPU rule's compute (its reductions are plain sums).

The max is a plain max, not the CPU's NaN-propagating one (TVM's cross-thread reduction
only knows the standard reducers); the result is the same: a NaN in a row makes its
sum of exp NaN, so the whole row is NaN, as in the reference.
"""
from __future__ import annotations

from ..elementwise import exp
from ..kernel import Kernel, LowerNode
from ..rules import make_kernel
from ..schedule_common import inline_spatial_producers
from .generic import cpu_compute, gpu_schedule
from .registry import cuda_rule

THREADS = 256


def schedule_rows(sch):
    """One block per row (module doc): per-row statistics, then the row's outputs."""
    inline_spatial_producers(sch)
    *stats, out = sch.get_child_blocks(sch.get_sblock("root"))
    loops = sch.get_loops(out)
    row = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
    sch.bind(row, "blockIdx.x")
    _, tx = sch.split(loops[-1], [None, THREADS])
    sch.bind(tx, "threadIdx.x")
    for stat in reversed(stats):
        sch.compute_at(stat, row)
        sch.set_scope(stat, 0, "shared")  # one value per row, read by all the block's threads
        _, reduce_tx = sch.split(sch.get_loops(stat)[-1], [None, THREADS])
        sch.bind(reduce_tx, "threadIdx.x")


def _softmax(x, log: bool):
    from tvm import te

    *rows, length = x.shape
    k = te.reduce_axis((0, length), name="k")
    row_max = te.compute(rows, lambda *r: te.max(x[(*r, k)], axis=k), name="row_max")
    k2 = te.reduce_axis((0, length), name="k2")
    total = te.compute(rows, lambda *r: te.sum(exp(x[(*r, k2)] - row_max[r]), axis=k2), name="total")
    if log:
        return te.compute(x.shape, lambda *i: x[i] - row_max[i[:-1]] - te.log(total[i[:-1]]), name="log_softmax")
    return te.compute(x.shape, lambda *i: exp(x[i] - row_max[i[:-1]]) / total[i[:-1]], name="softmax")


@cuda_rule("Softmax", "LogSoftmax", name="gpu-softmax-rows", family="softmax")
def softmax_rows(n: LowerNode) -> Kernel | None:
    """float32 Softmax/LogSoftmax over the last axis of a 2-D or higher tensor."""
    shape = n.inputs[0].type.shape
    if len(shape) < 2 or n.attrs["axis"] % len(shape) != len(shape) - 1 or n.outputs[0].dtype != "float32":
        return None
    x = n.placeholder(0)
    return make_kernel([x], [_softmax(x, n.op == "LogSoftmax")], schedule_rows, [0],
                       f"gpu softmax: one block of {THREADS} threads per row")


@cuda_rule("LayerNormalization", name="gpu-layernorm-rows", family="layernorm")
def layernorm_rows(n: LowerNode) -> Kernel | None:
    """LayerNormalization over the last axis only (module doc)."""
    rank = len(n.inputs[0].type.shape)
    if rank < 2 or n.attrs["axis"] % rank != rank - 1:
        return None
    return gpu_schedule(cpu_compute(n), schedule_rows, f"gpu layernorm: one block of {THREADS} threads per row")
