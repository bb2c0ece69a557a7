"""Fast 2-D convolution kernels for float32 NCHW: a blocked direct conv and a depthwise conv.

Both compute in a channel-blocked layout inside one PrimFunc:

    x NCHW --pack+pad--> [N, G, C/g/icb, Hp, Wp, icb] --conv--> [N, G, M/g/ocb, OH, OWp, ocb]
      --unpack (+bias)--> y NCHW

The conv accumulates a register tile of `reg_n` output columns x `ocb` output channels
(one SIMD vector per column) and reads one broadcast input value per FMA column, as in
the cookbook's recipe 2b. Output channels are padded to a multiple of the block with
zero weights and output columns to a multiple of the tile (extra input columns are
zeros), so every loop is a clean multiple: no tail predicates in the inner loops.
Weights are packed at compile time when constant, otherwise by a stage of the kernel.

The generic fallback (any dtype, any layout problem) lives in conv2d_generic.py and is
registered here last so that it is tried after the fast rules.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .conv2d_generic import ConvGeometry, conv2d_generic
from .kernel import Kernel, LowerNode
from .rules import make_kernel, rule
from .schedule_tiles import pick_tile, round_up

MAX_REG_COLUMNS = 12  # accumulator vectors per tile: fits the 16 registers of AVX2 with room for operands


@dataclass(frozen=True)
class BlockedConvPlan:
    """Block sizes of the blocked direct conv.

    ic_bn: input channels per packed block (divides C/group).
    oc_bn: output channels per block (SIMD vector width, or a multiple of it).
    reg_n: output columns per register tile.
    mg_padded: output channels per group rounded up to a multiple of oc_bn.
    ow_padded: output width rounded up to a multiple of reg_n.
    """

    ic_bn: int
    oc_bn: int
    reg_n: int
    mg_padded: int
    ow_padded: int


def _pick_ic_block(cg: int, limit: int = 16) -> int:
    """Largest divisor of cg <= limit; a larger divisor when that one is uselessly small."""
    small = max(d for d in range(1, min(cg, limit) + 1) if cg % d == 0)
    if small >= 8 or cg <= limit:
        return small
    return min(d for d in range(8, cg + 1) if cg % d == 0)


def plan_blocked_conv(g: ConvGeometry, lanes: int) -> BlockedConvPlan:
    """Choose block sizes for the blocked direct conv of geometry `g` with `lanes` SIMD lanes."""
    mg = g.m // g.groups
    # one vector of output channels; half a vector when a group has that few (less zero padding)
    oc_bn = lanes if mg > lanes // 2 else lanes // 2
    reg_n = pick_tile(g.ow, MAX_REG_COLUMNS)
    return BlockedConvPlan(_pick_ic_block(g.c // g.groups), oc_bn, reg_n,
                           round_up(mg, oc_bn), round_up(g.ow, reg_n))


def pack_weight_blocked(w: np.ndarray, groups: int, p: BlockedConvPlan) -> np.ndarray:
    """OIHW weights -> [G, Mg_pad/ocb, Cg/icb, kH, kW, icb, ocb] (zero rows for padded channels)."""
    m, cg, kh, kw = w.shape
    mg = m // groups
    w = w.reshape(groups, mg, cg, kh, kw)
    w = np.pad(w, ((0, 0), (0, p.mg_padded - mg), (0, 0), (0, 0), (0, 0)))
    w = w.reshape(groups, p.mg_padded // p.oc_bn, p.oc_bn, cg // p.ic_bn, p.ic_bn, kh, kw)
    return np.ascontiguousarray(w.transpose(0, 1, 3, 5, 6, 4, 2))


def _weight_operand(n: LowerNode, packed_shape, pack_numpy, pack_te):
    """The packed weight as (placeholder, arg, tensor used by the conv).

    Constant weights are packed now (numpy) and passed as a kernel constant; run-time
    weights get a packing stage inside the kernel.
    """
    w_in = n.inputs[1]
    if w_in.is_constant:
        packed = pack_numpy(w_in.data)
        ph = n.constant_placeholder(packed, "w_packed")
        return ph, packed, ph
    ph = n.placeholder(1, "w")
    from tvm import te

    return ph, 1, te.compute(packed_shape, pack_te(ph), name="w_pack")


def _pad_pack_input(x, g: ConvGeometry, hp: int, wp: int, c_bn: int, cg: int):
    """x NCHW -> [N, G, ceil(Cg/c_bn), hp, wp, c_bn] with the conv's zero padding applied
    (and zero channels past C when c_bn does not divide the channel count)."""
    from tvm import te, tirx

    def value(b, gi, cc, y, xx, cb):
        ch = gi * cg + cc * c_bn + cb
        inside = tirx.all(y >= g.pt, y < g.pt + g.h, xx >= g.pl, xx < g.pl + g.w)
        if cg % c_bn:
            inside = tirx.all(inside, ch < g.c)
        return tirx.if_then_else(inside, x[b, ch, y - g.pt, xx - g.pl], tirx.const(0, x.dtype))

    return te.compute((g.n, g.groups, -(-cg // c_bn), hp, wp, c_bn), value, name="data_pack")


def _padded_input_extent(out: int, stride: int, k: int, dil: int) -> int:
    return (out - 1) * stride + (k - 1) * dil + 1


def _unpack_output(conv, g: ConvGeometry, mg: int, oc_bn: int, bias):
    """Blocked conv result -> NCHW (dropping padded channels/columns), adding the bias."""
    from tvm import te

    def value(b, m, y, xx):
        v = conv[b, m // mg, (m % mg) // oc_bn, y, xx, (m % mg) % oc_bn]
        return v + bias[m] if bias is not None else v

    return te.compute((g.n, g.m, g.oh, g.ow), value, name="unpack")


def _schedule_unpack(sch, block, lanes: int):
    """Parallel over (n, channel, row); the row is short, leave it to LLVM."""
    b, m, y, xx = sch.get_loops(block)
    sch.parallel(sch.fuse(b, m, y))
    if sch.get(xx).extent.value % lanes == 0:
        sch.vectorize(sch.split(xx, [None, lanes])[1])


def _schedule_pack(sch, name: str):
    loops = sch.get_loops(sch.get_sblock(name))
    sch.parallel(sch.fuse(*loops[:4]))


@rule("Conv")
def conv2d_nchwc_direct(n: LowerNode) -> Kernel | None:
    """float32 Conv (any stride/pad/dilation/groups except depthwise) as a blocked direct conv."""
    from tvm import te

    if n.outputs[0].dtype != "float32":
        return None
    g = ConvGeometry.of(n)
    cg, mg = g.c // g.groups, g.m // g.groups
    if cg == 1 and mg == 1 and g.groups > 1:
        return None  # depthwise: its own rule
    lanes = n.target.vector_lanes
    p = plan_blocked_conv(g, lanes)
    x = n.placeholder(0, "x")
    hp = _padded_input_extent(g.oh, g.sh, g.kh, g.dh)
    wp = _padded_input_extent(p.ow_padded, g.sw, g.kw, g.dw)
    data = _pad_pack_input(x, g, hp, wp, p.ic_bn, cg)
    w_shape = (g.groups, p.mg_padded // p.oc_bn, cg // p.ic_bn, g.kh, g.kw, p.ic_bn, p.oc_bn)

    def pack_te(w):
        from tvm import tirx

        def value(gi, oc, ic, ry, rx, icb, ocb):
            m = oc * p.oc_bn + ocb
            return tirx.if_then_else(m < mg, w[gi * mg + m, ic * p.ic_bn + icb, ry, rx], tirx.const(0, w.dtype))
        return value

    w_ph, w_arg, wp_t = _weight_operand(n, w_shape, lambda w: pack_weight_blocked(w, g.groups, p), pack_te)
    rc = te.reduce_axis((0, cg), name="rc")
    ry = te.reduce_axis((0, g.kh), name="ry")
    rx = te.reduce_axis((0, g.kw), name="rx")
    conv = te.compute(
        (g.n, g.groups, p.mg_padded // p.oc_bn, g.oh, p.ow_padded, p.oc_bn),
        lambda b, gi, oc, y, xx, ob: te.sum(
            data[b, gi, rc // p.ic_bn, y * g.sh + ry * g.dh, xx * g.sw + rx * g.dw, rc % p.ic_bn]
            * wp_t[gi, oc, rc // p.ic_bn, ry, rx, rc % p.ic_bn, ob], axis=[rc, ry, rx]),
        name="conv")
    bias = n.placeholder(2, "bias") if len(n.inputs) > 2 else None
    y = _unpack_output(conv, g, mg, p.oc_bn, bias)
    ins, args = [x, w_ph] + ([bias] if bias is not None else []), [0, w_arg, 2][:len(n.inputs)]

    def schedule(sch):
        blk = sch.get_sblock("conv")
        acc = sch.cache_write(blk, 0, "local")
        b, gi, oc, yy, xx, ob, rc_, ry_, rx_ = sch.get_loops(blk)
        xo, xi = sch.split(xx, [None, p.reg_n])
        rco, rci = sch.split(rc_, [None, p.ic_bn])
        sch.reorder(b, gi, oc, yy, xo, rco, ry_, rx_, rci, xi, ob)
        sch.reverse_compute_at(acc, xo)
        sch.unroll(rci)
        sch.unroll(xi)
        sch.vectorize(ob)
        sch.parallel(sch.fuse(b, gi, oc, yy))
        sch.decompose_reduction(blk, rco)
        sch.vectorize(sch.get_loops(acc)[-1])
        _schedule_pack(sch, "data_pack")
        if not n.inputs[1].is_constant:
            _schedule_pack(sch, "w_pack")
        _schedule_unpack(sch, sch.get_sblock("unpack"), lanes)

    desc = (f"conv2d NCHW{p.ic_bn}c->NCHW{p.oc_bn}c direct, tile {p.reg_n}x{p.oc_bn}, "
            f"{'pre-packed' if n.inputs[1].is_constant else 'packed'} weights")
    return make_kernel(ins, [y], schedule, args, desc)


@rule("Conv")
def conv2d_depthwise(n: LowerNode) -> Kernel | None:
    """float32 depthwise Conv (one input and one output channel per group), channels blocked by
    the SIMD width: each FMA is a vector of channels times a vector of weights."""
    from tvm import te, tirx

    g = ConvGeometry.of(n)
    if n.outputs[0].dtype != "float32" or not (g.groups == g.c == g.m and g.groups > 1):
        return None
    lanes = n.target.vector_lanes
    cp = round_up(g.c, lanes)
    reg_n = pick_tile(g.ow, MAX_REG_COLUMNS)
    owp = round_up(g.ow, reg_n)
    # one group of cp channels: the packing and unpacking of the blocked conv apply as they are
    flat = ConvGeometry(g.n, g.c, g.h, g.w, g.m, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl, 1, g.oh, g.ow)
    x = n.placeholder(0, "x")
    data = _pad_pack_input(x, flat, _padded_input_extent(g.oh, g.sh, g.kh, g.dh),
                           _padded_input_extent(owp, g.sw, g.kw, g.dw), lanes, g.c)

    def pack_numpy(w):
        w = np.pad(w[:, 0], ((0, cp - g.c), (0, 0), (0, 0)))
        return np.ascontiguousarray(w.reshape(cp // lanes, lanes, g.kh, g.kw).transpose(0, 2, 3, 1))

    def pack_te(w):
        def value(cb, ry, rx, c):
            ch = cb * lanes + c
            return tirx.if_then_else(ch < g.c, w[ch, 0, ry, rx], tirx.const(0, w.dtype))
        return value

    w_ph, w_arg, wp_t = _weight_operand(n, (cp // lanes, g.kh, g.kw, lanes), pack_numpy, pack_te)
    ry = te.reduce_axis((0, g.kh), name="ry")
    rx = te.reduce_axis((0, g.kw), name="rx")
    conv = te.compute(
        (g.n, 1, cp // lanes, g.oh, owp, lanes),
        lambda b, gi, cb, y, xx, c: te.sum(
            data[b, gi, cb, y * g.sh + ry * g.dh, xx * g.sw + rx * g.dw, c] * wp_t[cb, ry, rx, c], axis=[ry, rx]),
        name="conv")
    bias = n.placeholder(2, "bias") if len(n.inputs) > 2 else None
    y = _unpack_output(conv, flat, cp, lanes, bias)
    ins, args = [x, w_ph] + ([bias] if bias is not None else []), [0, w_arg, 2][:len(n.inputs)]

    def schedule(sch):
        blk = sch.get_sblock("conv")
        acc = sch.cache_write(blk, 0, "local")
        b, gi, cb, yy, xx, c, ry_, rx_ = sch.get_loops(blk)
        xo, xi = sch.split(xx, [None, reg_n])
        sch.reorder(b, gi, cb, yy, xo, ry_, rx_, xi, c)
        sch.reverse_compute_at(acc, xo)
        sch.unroll(rx_)
        sch.unroll(xi)
        sch.vectorize(c)
        sch.parallel(sch.fuse(b, gi, cb, yy))
        sch.decompose_reduction(blk, ry_)
        sch.vectorize(sch.get_loops(acc)[-1])
        _schedule_pack(sch, "data_pack")
        if not n.inputs[1].is_constant:
            _schedule_pack(sch, "w_pack")
        _schedule_unpack(sch, sch.get_sblock("unpack"), lanes)

    return make_kernel(ins, [y], schedule, args, f"depthwise conv2d NCHW{lanes}c, tile {reg_n}x{lanes}")


@rule("Conv", fallback=True)
def conv2d_fallback(n: LowerNode) -> Kernel:
    """Any Conv the fast rules do not take (other dtypes)."""
    return conv2d_generic(n)
