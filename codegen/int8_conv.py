"""QConv kernels: a blocked direct conv of dot instructions (NCHW -> 4-channel words -> NCHW) and a generic one.

The fast conv computes in one PrimFunc:

    x NCHW --pack(+pad with the zero point)--> [N, G, ceil(Cg/4), Hp, Wp] int32 words of 4 u8 channels
    --conv--> tile [reg_n columns x bn channels] of int32 accumulators, one dot instruction per
    column and register of channels per step (step = 4 input channels of one tap)
    --requantize (+residual, +Relu)--> y NCHW int8/uint8

as in conv2d.py's blocked conv, with 4-channel words in place of single channels (int8.py has
the folded bias and the requantization, int8_dot.py the packing and the instructions).
Output channels per group are padded to the block with zero weights, output columns to the
tile, input channels to a multiple of 4 (zero weights). A depthwise conv (one channel per group)
would run 16-64x padded work: int8_depthwise.py has its own rule.
"""
from __future__ import annotations

import numpy as np

from .conv2d import _padded_input_extent
from .conv2d_generic import ConvGeometry, _direct_conv, schedule_direct_conv
from .int8 import (EFFICIENCY_GENERIC, EFFICIENCY_INT8, Requantize, bias_is_constant, folded_bias,
                   requantize_epilogue, wrapping_add, x_byte, x_minus_zero_point, x_pad_byte)
from .int8_dot import dot4, dot_kernel, pack_u8_word, pack_weight_words, pick_instruction, pick_tile
from .kernel import Kernel, LowerNode
from .rules import make_kernel, rule
from .schedule_common import lanes_for
from .schedule_tiles import round_up

MIN_CHANNELS_PER_GROUP = 8  # fewer output channels per group waste most of each dot instruction's lanes


def pack_qconv_weight(w: np.ndarray, groups: int, bn: int, mg_padded: int) -> np.ndarray:
    """int8 OIHW -> int32 words [G, Mg_pad/bn, ceil(Cg/4), kH, kW, bn] (zero weights in the padding)."""
    m, cg, kh, kw = w.shape
    cq = -(-cg // 4)
    w = w.reshape(groups, m // groups, cg, kh, kw)
    w = np.pad(w, ((0, 0), (0, mg_padded - m // groups), (0, 4 * cq - cg), (0, 0), (0, 0)))
    w = w.reshape(groups, mg_padded // bn, bn, cq, 4, kh, kw).transpose(0, 1, 3, 5, 6, 2, 4)
    return pack_weight_words(w)


def _schedule_int8_conv(reg_n: int, vecs: int, lanes: int, direct_write: bool):
    """The register tile (reg_n columns x vecs vectors of `lanes`) accumulates over (word, ry, rx);
    the loops above it are fused and parallel. With `direct_write` the tile is requantized straight
    to NCHW, a vector of channels at a time; otherwise (groups whose channels do not fill whole
    blocks: a tile's write-back would cover the next group's channels, which another thread
    computes) it is stored blocked and requantized by a separate parallel pass."""
    def apply(sch):
        pack = sch.get_loops(sch.get_sblock("x_pack"))
        sch.parallel(sch.fuse(*pack[:4]))
        blk = sch.get_sblock("conv")
        acc = sch.cache_write(blk, 0, "local")
        b, gi, oc, y, xx, ob, rq, ry, rx = sch.get_loops(blk)
        xo, xi = sch.split(xx, [None, reg_n])
        ov, ol = sch.split(ob, [vecs, lanes])
        sch.reorder(b, gi, oc, y, xo, rq, ry, rx, xi, ov, ol)
        sch.unroll(xi)
        sch.unroll(ov)
        sch.parallel(sch.fuse(b, gi, oc, y))
        sch.decompose_reduction(blk, rq)
        sch.vectorize(sch.get_loops(sch.get_sblock("conv_init"))[-1])
        sch.blockize(ol)
        requant = sch.get_sblock("requant")
        if not direct_write:
            sch.reverse_compute_at(acc, xo)
            sch.vectorize(sch.get_loops(acc)[-1])
            b, m, y, _ = sch.get_loops(requant)
            sch.parallel(sch.fuse(b, m, y))
            return
        sch.compute_inline(acc)
        sch.reverse_compute_at(requant, xo)
        # the tile's channels (and its columns, unless one): vectors along the channels read the
        # accumulators contiguously (1.4x faster on a 1x1 64->256 conv than columns, which gather)
        channels, *columns = sch.get_loops(requant)[2:]
        if columns:
            sch.reorder(columns[0], channels)
            sch.unroll(columns[0])
        vo, vi = sch.split(channels, [None, lanes])
        sch.unroll(vo)
        sch.vectorize(vi)
    return apply


@rule("QConv", name="qconv-int8", family="int8", efficiency=EFFICIENCY_INT8)
def qconv_int8(n: LowerNode) -> Kernel | None:
    """QConv with constant w (and bias) and >= 8 output channels per group: the blocked direct
    conv of dot instructions (module doc)."""
    from tvm import te, tirx

    g = ConvGeometry.of(n)
    cg, mg = g.c // g.groups, g.m // g.groups
    instr = pick_instruction(n.target.mcpu, n.inputs[1].data, 1) if n.inputs[1].is_constant else None
    if instr is None or not bias_is_constant(n) or mg < MIN_CHANNELS_PER_GROUP:
        return None
    vecs, reg_n = pick_tile(instr, mg, g.ow)
    bn, cq = vecs * instr.lanes, -(-cg // 4)
    mg_p, cols_p = round_up(mg, bn), round_up(g.ow, reg_n)
    hp, wp = _padded_input_extent(g.oh, g.sh, g.kh, g.dh), _padded_input_extent(cols_p, g.sw, g.kw, g.dw)
    w_words = pack_qconv_weight(n.inputs[1].data, g.groups, bn, mg_p)
    bias = folded_bias(n, n.inputs[1].data.reshape(g.m, -1).astype(np.int64).sum(axis=1), g.m)

    x = n.placeholder(0, "x")

    def word(b, gi, q, y, xx):
        def valid(i):
            tests = [(g.pt > 0, y >= g.pt), (hp > g.pt + g.h, y < g.pt + g.h), (g.pl > 0, xx >= g.pl),
                     (wp > g.pl + g.w, xx < g.pl + g.w), (cg % 4 != 0, q * 4 + i < cg)]
            return tirx.all(*[t for needed, t in tests if needed] or [tirx.const(True)])

        def byte(i):  # indices clamped into x: the padding's bytes are replaced, never read
            ch = gi * cg + tirx.min(q * 4 + i, cg - 1)
            iy, ix = tirx.max(tirx.min(y - g.pt, g.h - 1), 0), tirx.max(tirx.min(xx - g.pl, g.w - 1), 0)
            return x_byte(n, x[b, ch, iy, ix])
        return pack_u8_word(byte, x_pad_byte(n), valid)

    x_pack = te.compute((g.n, g.groups, cq, hp, wp), word, name="x_pack")
    w_ph, b_ph = n.constant_placeholder(w_words, "w_words"), n.constant_placeholder(bias, "bias_folded")
    rq_axis = te.reduce_axis((0, cq), name="rq")
    ry, rx = te.reduce_axis((0, g.kh), name="ry"), te.reduce_axis((0, g.kw), name="rx")
    conv = te.compute((g.n, g.groups, mg_p // bn, g.oh, cols_p, bn), lambda b, gi, oc, y, xx, ob: te.sum(
        dot4(x_pack[b, gi, rq_axis, y * g.sh + ry * g.dh, xx * g.sw + rx * g.dw],
             w_ph[gi, oc, rq_axis, ry, rx, ob]), axis=[rq_axis, ry, rx]), name="conv")
    rq = Requantize(n)

    def out(b, m, y, xx):
        gi, mm = (m // mg, m % mg) if g.groups > 1 else (0, m)
        return rq(wrapping_add(conv[b, gi, mm // bn, y, xx, mm % bn], b_ph[m]), m, (b, m, y, xx))

    y = te.compute((g.n, g.m, g.oh, g.ow), out, name="requant")
    desc = f"qconv int8 {instr.name} NCHW->[4c words]->NCHW, tile {reg_n}x{bn}, pre-packed w"
    direct_write = g.groups == 1 or mg % bn == 0
    k = dot_kernel([x, w_ph, b_ph] + rq.inputs, [y], _schedule_int8_conv(reg_n, vecs, instr.lanes, direct_write),
                   [0, w_words, bias] + rq.args, desc, "conv_update_o", instr)
    k.extra["flops"] = 2 * g.n * g.groups * mg_p * g.oh * cols_p * 4 * cq * g.kh * g.kw
    return k


class QConvWriteBack:
    """conv2d_generic's epilogue interface over the requantization (bias + requantize per channel)."""

    is_identity = False

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, value, b, m, y, x):
        return self.fn(value, m, (b, m, y, x))


@rule("QConv", name="qconv-generic", family="int8-generic", efficiency=EFFICIENCY_GENERIC, fallback=True)
def qconv_generic(n: LowerNode) -> Kernel:
    """Any QConv: conv2d_generic's direct conv over (x - x_zero_point) in int32, zero padded, requantized."""
    from tvm import te, tirx

    g = ConvGeometry.of(n)
    x, w = n.placeholder(0, "x"), n.placeholder(1, "w")
    hp, wp = _padded_input_extent(g.oh, g.sh, g.kh, g.dh), _padded_input_extent(g.ow, g.sw, g.kw, g.dw)
    src = te.compute((g.n, g.c, hp, wp), lambda b, c, y, xx: tirx.if_then_else(
        tirx.all(y >= g.pt, y < g.pt + g.h, xx >= g.pl, xx < g.pl + g.w),
        x_minus_zero_point(n, x[b, c, y - g.pt, xx - g.pl]), tirx.const(0, "int32")), name="source")
    ins, args, write_back = requantize_epilogue(n)
    out = _direct_conv(src, lambda m, c, ry, rx: tirx.Cast("int32", w[m, c, ry, rx]), QConvWriteBack(write_back),
                       n.outputs[0].shape, g.c // g.groups, g.m // g.groups, g.kh, g.kw, (g.sh, g.sw), (g.dh, g.dw))
    return make_kernel([x, w] + ins, [out], schedule_direct_conv(lanes_for(n.target, "int32"), True),
                       [0, 1] + args, "qconv generic direct (int32 row accumulator)")
