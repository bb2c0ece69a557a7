"""Winograd F(2x2, 3x3) / F(4x4, 3x3) convolution on the GPU.

The TE compute is the CPU rule's (codegen/conv2d_winograd.py: weights transformed at
compile time, input transform V, alpha^2 batched GEMMs, inverse transform, epilogue);
the GPU schedule runs it as four kernels:

    T1 = d B, V = B^T T1   two passes, one thread per transformed element (the padded
                       input is inlined; inlining T1 into V as well takes TVM ~1 s per layer)
    M = V x U          per (eps, nu): gemm.py's tiled product (shared-memory tiles,
                       register blocking), tiles chosen to divide the padded sizes
    Y = A^T M A        one thread per output element (+ bias, residual, activation)
"""
from __future__ import annotations

from ..kernel import Kernel, LowerNode
from .gemm import GpuGemmPlan, tile_product_block
from .generic import cpu_compute, gpu_schedule
from .registry import cuda_rule
from .schedule_gpu import bind_block_spatial


def _divisor_tile(extent: int, choices=(64, 32, 16, 8, 4, 2, 1)) -> int:
    return next(c for c in choices if extent % c == 0)


def plan_dividing(rows: int, cols: int, k: int) -> GpuGemmPlan:
    """A GpuGemmPlan whose block tiles and k step divide rows, cols and k (no tail predicates)."""
    bm, bn = _divisor_tile(rows), _divisor_tile(cols)
    tm, tn = (4 if bm >= 64 else max(1, bm // 16)), (4 if bn >= 64 else max(1, bn // 16))
    return GpuGemmPlan(bm, bn, tm, tn, _divisor_tile(k, (16, 8, 4, 2, 1)))


def schedule_winograd(sch):
    """Schedule the CPU Winograd compute for the GPU (module doc)."""
    for stage in ("data_pack", "s1", "inverse"):
        sch.compute_inline(sch.get_sblock(stage))
    for stage in ("t1", "v"):
        bind_block_spatial(sch, sch.get_sblock(stage))
    gemm = sch.get_sblock("gemm")
    e, nu, p, co, ci = sch.get_loops(gemm)
    sch.fuse(e, nu)
    plan = plan_dividing(*(int(sch.get(loop).extent) for loop in (p, co, ci)))
    ko, tx, ti, tj = tile_product_block(sch, gemm, plan, [None, None])
    sch.reverse_compute_at(sch.cache_write(gemm, 0, "local"), tx)
    sch.unroll(ti)
    sch.unroll(tj)
    sch.decompose_reduction(gemm, ko)
    bind_block_spatial(sch, sch.get_sblock("unpack"))
    return plan


def _winograd_rule(m: int):
    def lower(n: LowerNode) -> Kernel | None:
        kernel = cpu_compute(n, accept=lambda r: r.name == f"conv2d-winograd-f{m}")
        if kernel is None:
            return None
        plans = []
        scheduled = gpu_schedule(kernel, lambda sch: plans.append(schedule_winograd(sch)),
                                 f"gpu winograd F({m}x{m},3x3)")
        scheduled.schedule += f": batched GEMM {plans[0].describe()}"
        return scheduled
    lower.__doc__ = f"float32 3x3 stride-1 Conv as Winograd F({m}x{m},3x3) (module doc)."
    return lower


# not yet measured on a GPU: built only with `--schedule winograd=on` (opt_in), so default
# compiles do not pay for candidates the uncalibrated cost model could not judge
conv2d_winograd_f2 = cuda_rule("Conv", name="gpu-conv2d-winograd-f2", family="winograd",
                               efficiency=0.2, opt_in=True)(_winograd_rule(2))
conv2d_winograd_f4 = cuda_rule("Conv", name="gpu-conv2d-winograd-f4", family="winograd",
                               efficiency=0.2, opt_in=True)(_winograd_rule(4))
