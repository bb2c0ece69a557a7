"""Depthwise QConv (one input and one output channel per group, MobileNet-style): channels blocked by
the SIMD width, as conv2d.py's float depthwise conv, in int32.

    x NCHW --pack: x - x_zero_point as int32, padded with 0 (a real 0)--> [N, 1, C/lanes, Hp, Wp, lanes]
    --conv: tile of reg_n columns x lanes channels of int32 accumulators, one vector multiply-add
    per column and tap (weights pre-packed [C/lanes, kH, kW, lanes] int32)--> requantize (+ bias,
    + residual, + Relu; int8.py's Requantize) --unpack--> y NCHW int8/uint8

The products fit int32 and a depthwise sum has kH * kW of them, so the accumulators never wrap
before the bias; the bias is added wrapping, as the reference does (ir/ops/quant.py).
The dot-product rules (int8_conv.py) would waste 15/16 of each instruction on one channel per group;
long output rows vectorize better along the row (the generic rule, see MAX_ROW_VECTORS).
"""
from __future__ import annotations

import numpy as np

from .conv2d import MAX_REG_COLUMNS, _pad_pack_input, _padded_input_extent, _schedule_pack, _schedule_unpack, \
    _unpack_output, schedule_depthwise_tile
from .conv2d_generic import ConvGeometry
from .int8 import requantize_epilogue, x_minus_zero_point
from .int8_conv import QConvWriteBack
from .kernel import Kernel, LowerNode
from .rules import make_kernel, rule
from .schedule_tiles import pick_tile, round_up

# output rows of at least this many vectors go to the generic rule, which vectorizes along the row
# with no packing: benchmarks/int8_kernels.py --only dw- measured this rule 0.5-0.75x of it at 56-112
# columns, 1.5-2.6x at 7-28 columns (16 lanes)
MAX_ROW_VECTORS = 3
# fraction of the fp32 peak: 16 int32 multiply-adds per 2 instructions (vpmulld + vpaddd), and the
# pack / requantize passes over memory, measured by benchmarks/int8_kernels.py --only dw
EFFICIENCY_DEPTHWISE = 0.1


@rule("QConv", name="qconv-depthwise-int8", family="int8", efficiency=EFFICIENCY_DEPTHWISE)
def qconv_depthwise_int8(n: LowerNode) -> Kernel | None:
    """Depthwise QConv with constant weights and output rows shorter than MAX_ROW_VECTORS vectors:
    vectors of `lanes` channels (module doc)."""
    from tvm import te

    g = ConvGeometry.of(n)
    lanes = n.target.vector_lanes
    if not (g.groups == g.c == g.m and g.groups > 1) or not n.inputs[1].is_constant or g.ow >= MAX_ROW_VECTORS * lanes:
        return None
    cp = round_up(g.c, lanes)
    reg_n = pick_tile(g.ow, MAX_REG_COLUMNS)
    owp = round_up(g.ow, reg_n)
    flat = ConvGeometry(g.n, g.c, g.h, g.w, g.m, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl, 1, g.oh, g.ow)
    x = n.placeholder(0, "x")
    data = _pad_pack_input(lambda b, c, y, xx: x_minus_zero_point(n, x[b, c, y, xx]), "int32", flat,
                           _padded_input_extent(g.oh, g.sh, g.kh, g.dh), _padded_input_extent(owp, g.sw, g.kw, g.dw),
                           lanes, g.c)
    w = np.pad(n.inputs[1].data[:, 0].astype(np.int32), ((0, cp - g.c), (0, 0), (0, 0)))
    w_words = np.ascontiguousarray(w.reshape(cp // lanes, lanes, g.kh, g.kw).transpose(0, 2, 3, 1))
    w_ph = n.constant_placeholder(w_words, "w_lanes")
    ry, rx = te.reduce_axis((0, g.kh), name="ry"), te.reduce_axis((0, g.kw), name="rx")
    conv = te.compute(
        (g.n, 1, cp // lanes, g.oh, owp, 1, lanes),
        lambda b, gi, cb, y, xx, _, c: te.sum(
            data[b, gi, cb, y * g.sh + ry * g.dh, xx * g.sw + rx * g.dw, c] * w_ph[cb, ry, rx, c], axis=[ry, rx]),
        name="conv")
    ins, args, write_back = requantize_epilogue(n)
    y = _unpack_output(conv, flat, cp, lanes, QConvWriteBack(write_back))

    def schedule(sch):
        schedule_depthwise_tile(sch, reg_n)
        _schedule_pack(sch, "data_pack")
        _schedule_unpack(sch, lanes)

    return make_kernel([x, w_ph] + ins, [y], schedule, [0, w_words] + args,
                       f"qconv depthwise int8 NCHW{lanes}c int32, tile {reg_n}x{lanes}")
