"""Convolutions on the GPU.

Implicit GEMM (float32, any group count with several output channels per group): per
group, output pixels x input taps times taps x output channels,

    rows = N*OH*OW (p),  k = C/groups * KH * KW (c, ry, rx),  cols = M/groups (m)
    A[g, p, k] = x[b, g*cg + c, y*sh - pt + ry*dh, x*sw - pl + rx*dw]   (0 in the padding)
    B[g, k, m] = w[g*mg + m, c, ry, rx]                                 (packed at compile time)

computed by gemm.py's tiled product: the im2col tile is gathered straight into shared
memory, never materialized in global memory. The conv epilogue (bias, residual,
activation) is applied by each thread to its accumulators, which it writes to their NCHW
places (`_nchw_of_product`): one kernel per conv.

Direct (group 1; opt-in, `--schedule direct=on`): the CPU generic rule's direct
convolution tiled over (output channels, rows, columns): a GPU block computes bm channels
x by x bx pixels, a thread tm channels of one pixel; per step of rstep input channels the
zero-padded input window and the weights are fetched into shared memory. Tiles divide the
sizes (no predicates), and the epilogue is applied to the accumulators in registers.

Depthwise (one input and one output channel per group): the same direct computation,
one output element per thread (KH*KW multiply-adds each).
"""
from __future__ import annotations

from ..conv2d_generic import ConvEpilogue, ConvGeometry
from ..gemm import MatmulView
from ..kernel import Kernel, LowerNode
from .generic import cpu_compute, gpu_schedule
from .gemm import tiled_product
from .registry import cuda_rule
from .schedule_gpu import schedule_threads, shared_fetch


def _conv2d(n: LowerNode) -> ConvGeometry | None:
    """The geometry of a float32 2-D Conv with constant weights (what these rules take), else None."""
    if len(n.inputs[0].type.shape) != 4 or n.outputs[0].dtype != "float32" or not n.inputs[1].is_constant:
        return None
    return ConvGeometry.of(n)


def _implicit_gemm_view(n: LowerNode, g: ConvGeometry, epilogue: ConvEpilogue) -> MatmulView:
    from tvm import tirx

    cg, mg, taps, pixels = g.c // g.groups, g.m // g.groups, g.kh * g.kw, g.oh * g.ow

    def a_at(x, grp, p, kk):
        b, y, xx = p // pixels, (p % pixels) // g.ow, p % g.ow
        c, ry, rx = kk // taps, (kk % taps) // g.kw, kk % g.kw
        iy, ix = y * g.sh - g.pt + ry * g.dh, xx * g.sw - g.pl + rx * g.dw
        inside = tirx.all(iy >= 0, iy < g.h, ix >= 0, ix < g.w)
        value = x[b, grp * cg + c, tirx.max(tirx.min(iy, g.h - 1), 0), tirx.max(tirx.min(ix, g.w - 1), 0)]
        return tirx.if_then_else(inside, value, tirx.const(0, x.dtype))

    def b_matrices(w):  # [M, cg, kh, kw] -> [groups, cg*kh*kw, mg]
        return w.reshape(g.groups, mg, cg * taps).transpose(0, 2, 1)

    return MatmulView(
        g.groups, g.n * pixels, cg * taps, mg, a_at=a_at,
        b_batch=g.groups, b_of=lambda grp: grp, b_matrices=b_matrices, b_at=None,
        out_index=lambda idx: (idx[1] // mg, (idx[0] * g.oh + idx[2]) * g.ow + idx[3], idx[1] % mg),
        extra_inputs=[], epilogue=lambda v, idx: epilogue(v, *idx))


@cuda_rule("Conv", name="gpu-conv2d-implicit-gemm", family="implicit-gemm", efficiency=0.4)
def conv2d_implicit_gemm(n: LowerNode) -> Kernel | None:
    """float32 2-D Conv with constant weights as a tiled implicit GEMM (module doc)."""
    g = _conv2d(n)
    if g is None or g.m // g.groups == 1:
        return None
    epilogue = ConvEpilogue.of(n)
    v = _implicit_gemm_view(n, g, epilogue)
    act = n.attrs.get("activation", "")
    return tiled_product(n, v, n.placeholder(0, "x"), n.outputs[0].shape,
                         "gpu conv2d implicit gemm" + (f" + {act}" if act else ""), epilogue.inputs, epilogue.args,
                         out_at=_nchw_of_product(g))


def _nchw_of_product(g: ConvGeometry):
    """Product index (group, pixel, channel in group) -> NCHW output index: a bijection, so
    the epilogue can be computed per product element and fused into the accumulators."""
    mg, pixels = g.m // g.groups, g.oh * g.ow
    return lambda grp, p, j: (p // pixels, grp * mg + j, (p % pixels) // g.ow, p % g.ow)


@cuda_rule("Conv", name="gpu-conv2d-depthwise", family="depthwise", efficiency=0.1)
def conv2d_depthwise(n: LowerNode) -> Kernel | None:
    """Depthwise 2-D Conv: direct, one output element per thread, padding inlined."""
    g = _conv2d(n)
    if g is None or not (g.groups == g.c == g.m):
        return None
    kernel = cpu_compute(n, accept=lambda r: r.fallback)
    return gpu_schedule(kernel, schedule_threads, "gpu depthwise conv2d direct: one output per thread")


def _divisor(extent: int, choices) -> int:
    return next(c for c in choices if extent % c == 0)


def schedule_direct(sch, bm: int, tm: int, by: int, bx: int, rstep: int):
    """Tile conv2d_generic's "conv" block (module doc); its "source" stage (the padded input)
    is computed into shared memory per step of `rstep` input channels."""
    conv = sch.get_sblock("conv")
    b, m, y, x, rc, ry, rx = sch.get_loops(conv)
    mo, mt, mi = sch.split(m, [None, bm // tm, tm])
    yo, yt = sch.split(y, [None, by])
    xo, xt = sch.split(x, [None, bx])
    rco, rci = sch.split(rc, [None, rstep])
    sch.reorder(b, mo, yo, xo, mt, yt, xt, rco, rci, ry, rx, mi)
    for loop, axis in ((sch.fuse(b, mo), "blockIdx.z"), (yo, "blockIdx.y"), (xo, "blockIdx.x"),
                       (mt, "threadIdx.z"), (yt, "threadIdx.y"), (xt, "threadIdx.x")):
        sch.bind(loop, axis)
    threads = (bm // tm, by, bx)
    source = sch.get_sblock("source")
    sch.set_scope(source, 0, "shared")
    shared_fetch(sch, source, rco, threads)
    shared_fetch(sch, sch.cache_read(conv, 1, "shared"), rco, threads)  # read 1: the weights
    if _has_block(sch, "epilogue"):  # bias, residual, activation on the accumulators
        sch.set_scope(conv, 0, "local")
        sch.reverse_compute_at(sch.get_sblock("epilogue"), xt)
    else:
        sch.reverse_compute_at(sch.cache_write(conv, 0, "local"), xt)
    sch.unroll(mi)
    sch.decompose_reduction(conv, rco)


def _has_block(sch, name: str) -> bool:
    return any(sch.get(blk).name_hint == name for blk in sch.get_child_blocks(sch.get_sblock("root")))


@cuda_rule("Conv", name="gpu-conv2d-direct", family="direct", efficiency=0.3, opt_in=True)
def conv2d_direct(n: LowerNode) -> Kernel | None:
    """float32 group-1 2-D Conv, direct with shared-memory tiles (module doc)."""
    g = _conv2d(n)
    if g is None or g.groups != 1:
        return None
    bm = _divisor(g.m, (32, 16, 8, 4, 2, 1))
    tm = min(4, bm)
    by, bx = _divisor(g.oh, (8, 4, 2, 1)), _divisor(g.ow, (8, 4, 2, 1))
    rstep = _divisor(g.c, (8, 4, 2, 1))
    kernel = cpu_compute(n, accept=lambda r: r.fallback)
    desc = f"gpu conv2d direct: block {bm} channels x {by}x{bx} pixels, {tm} channels per thread"
    return gpu_schedule(kernel, lambda sch: schedule_direct(sch, bm, tm, by, bx, rstep), desc)
