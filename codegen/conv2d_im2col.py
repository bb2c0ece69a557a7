"""im2col + GEMM convolution for float32 NCHW, group 1, any kernel/stride/padding/dilation.

Per image, the output [M, OH*OW] is the product of the weights [M, K] (K = C*kH*kW) and
the column matrix [K, OH*OW]; output rows are NCHW rows, so no layout change is needed:

    w [M, C, kH, kW] --pack (compile time)--> A [M/mr, K, mr]     (mr output channels per tile)
    x NCHW --im2col, one panel of bn pixels at a time--> col [N, OH*OW/bn, K, bn]
    out[n, m, j] = sum_k A[m, k] col[n, j, k]                       (tile mr x bn, bn = SIMD lanes x 2)

The column panel of bn pixels is built right before the tiles that read it (compute_at),
so the K x (OH*OW) matrix never exists in full.
"""
from __future__ import annotations

import numpy as np

from .conv2d_generic import ConvEpilogue, ConvGeometry, conv_in_blocks
from .kernel import Kernel, LowerNode
from .rules import make_kernel, rule
from .schedule_tiles import pick_tile, round_up

K_UNROLL = 4
EFFICIENCY = 0.5  # benchmarks/conv.py: slower than the direct conv (0.8) on every 3x3 layer measured


def pack_weight_rows(w: np.ndarray, mr: int, mp: int) -> np.ndarray:
    """OIHW weights -> [mp/mr, C*kH*kW, mr], zero rows for the padded output channels."""
    w2 = np.pad(w.reshape(w.shape[0], -1), ((0, mp - w.shape[0]), (0, 0)))
    return np.ascontiguousarray(w2.reshape(mp // mr, mr, -1).transpose(0, 2, 1))


@rule("Conv", name="conv2d-im2col", family="im2col", efficiency=EFFICIENCY)
def conv2d_im2col(n: LowerNode) -> Kernel | None:
    """float32 group-1 Conv as an im2col panel times packed weights (register tile mr x bn).

    Args:
        n: the Conv node.
    Returns:
        the Kernel, or None for other dtypes and grouped convs.
    """
    from tvm import te, tirx

    g = ConvGeometry.of(n)
    if n.outputs[0].dtype != "float32" or g.groups != 1:
        return None
    lanes = n.target.vector_lanes
    pixels, k_len = g.oh * g.ow, g.c * g.kh * g.kw
    bn = 2 * lanes if pixels > lanes else lanes
    jp = round_up(pixels, bn)
    mr = pick_tile(g.m, 6 if lanes <= 8 else 12, min_tile=2)
    mp = round_up(g.m, mr)
    x, read_x = n.reader(0, "x")
    taps = g.kh * g.kw
    if n.inputs[1].is_constant:
        packed = pack_weight_rows(n.inputs[1].data, mr, mp)
        w_ph = n.constant_placeholder(packed, "w_packed")
        w_arg, wa = packed, w_ph
    else:
        w_ph, w_arg = n.placeholder(1, "w"), 1
        wa = te.compute((mp // mr, k_len, mr), lambda mo, k, mi: tirx.if_then_else(
            mo * mr + mi < g.m, w_ph[tirx.min(mo * mr + mi, g.m - 1), k // taps, k % taps // g.kw, k % g.kw],
            tirx.const(0, "float32")), name="w_pack")

    def col_value(b, jo, k, ji):
        j = jo * bn + ji
        y = (j // g.ow) * g.sh + (k % taps // g.kw) * g.dh - g.pt
        xx = (j % g.ow) * g.sw + (k % g.kw) * g.dw - g.pl
        inside = tirx.all(j < pixels, y >= 0, y < g.h, xx >= 0, xx < g.w)
        return tirx.if_then_else(inside, read_x(b, k // taps, y, xx), tirx.const(0, "float32"))

    col = te.compute((g.n, jp // bn, k_len, bn), col_value, name="im2col")
    kk = te.reduce_axis((0, k_len), name="k")
    prod = te.compute((g.n, mp, jp), lambda b, m, j: te.sum(
        wa[m // mr, kk, m % mr] * col[b, j // bn, kk, j % bn], axis=kk), name="product")
    epilogue = ConvEpilogue.of(n, read_blocks=True)
    out_block = n.out_block

    def out_value(b, m, y, xx):
        return epilogue(prod[b, m, y * g.ow + xx], b, m, y, xx)

    if out_block:  # NCHW{b}c: the product's rows are channels, a vector of them per pixel
        out = te.compute((g.n, g.m // out_block, g.oh, g.ow, out_block),
                         lambda b, co, y, xx, ci: out_value(b, co * out_block + ci, y, xx), name="epilogue")
    else:
        out = te.compute((g.n, g.m, g.oh, g.ow), out_value, name="epilogue")

    def schedule(sch):
        blk = sch.get_sblock("product")
        acc = sch.cache_write(blk, 0, "local")
        b, m, j, k = sch.get_loops(blk)
        mo, mi = sch.split(m, [None, mr])
        jo, ji = sch.split(j, [None, bn])
        ko, ki = sch.split(k, [None, K_UNROLL]) if k_len % K_UNROLL == 0 else (k, None)
        sch.reorder(b, jo, mo, ko, *([ki] if ki is not None else []), mi, ji)
        bj = sch.fuse(b, jo)
        sch.parallel(bj)
        sch.compute_at(sch.get_sblock("im2col"), bj)
        sch.reverse_compute_at(acc, mo)
        if ki is not None:
            sch.unroll(ki)
        sch.unroll(mi)
        sch.vectorize(ji)
        sch.decompose_reduction(blk, ko)
        sch.vectorize(sch.get_loops(acc)[-1])
        sch.vectorize(sch.get_loops(sch.get_sblock("im2col"))[-1])
        if not n.inputs[1].is_constant:
            sch.parallel(sch.get_loops(sch.get_sblock("w_pack"))[0])
        eb, em, *_ = sch.get_loops(sch.get_sblock("epilogue"))
        sch.parallel(sch.fuse(eb, em))

    desc = f"conv2d im2col+GEMM, panels of {bn} pixels, tile {mr}x{bn}"
    kernel = make_kernel([x, w_ph] + epilogue.inputs, [out], schedule, [0, w_arg] + epilogue.args, desc)
    kernel.in_blocks, kernel.out_block = conv_in_blocks(n), out_block
    kernel.extra["flops"] = 2 * g.n * mp * jp * k_len + epilogue.flops(g)
    return kernel
