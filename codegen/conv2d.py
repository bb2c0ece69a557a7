"""Fast 2-D convolution kernels for float32 NCHW: a blocked direct conv, a 1x1 conv and a
depthwise conv.

The blocked convs compute in one PrimFunc:

    x NCHW --pack(+pad)--> [N, G, C/g/icb, Hp, Wp, icb] --conv--> tile [OWt, ocb] in registers
      --(+bias, activation)--> y NCHW

The conv accumulates a register tile of `reg_n` output columns x `oc_bn` output channels
(`oc_bn / lanes` SIMD vectors per column) and reads one broadcast input value per
column and input channel, as in the cookbook's recipe 2b. The tile is chosen per layer
by a small model of the core (`tile_cycles_per_fma`): two FMA pipes with a 4-cycle
latency, two loads a cycle, and the register file of the ISA. Output channels are padded
to a multiple of the block with zero weights and output columns to a multiple of the
tile (extra input columns are zeros), so every loop is a clean multiple: no tail
predicates in the inner loops. Weights are packed at compile time when constant,
otherwise by a stage of the kernel.

The register tile is written straight to NCHW with the bias added (no blocked output in
memory). An unpadded 1x1 conv is the same kernel with no packing at all (a tile's
broadcasts are pixels of one NCHW row; tiles divide the width) and, when that
moves less data, blocked GEMM-style with rows outermost. Packing drops the padding
predicate where no pad is crossed.

The generic fallback (any dtype, any layout problem) lives in conv2d_generic.py and is
registered here last so that it is tried after the fast rules.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .conv2d_generic import ConvEpilogue, ConvGeometry, conv2d_generic, conv_in_blocks
from .kernel import Kernel, LowerNode
from .rules import make_kernel, rule
from .schedule_tiles import pick_tile, round_up

MAX_REG_COLUMNS = 12  # depthwise tile: accumulator vectors that fit AVX2's 16 registers with operands
MAX_TILE_COLUMNS = 16  # longer unrolled tiles only grow the code
FMA_LATENCY = 4  # cycles; 2 FMA pipes and 2 load ports per core (Zen1, Skylake-X and later)
# fraction of CpuTarget.peak_flops reached at slowdown 1.0 (benchmarks/conv_layers.py, 2 threads,
# AVX-512): 3x3 convs with up to ~128 input channels 0.8-1.05; C >= 256 only ~0.55 (the weight
# block of a channel block no longer stays in L2); 1x1 convs 0.4-0.75 (little work per byte)
EFFICIENCY_DIRECT = 0.85
EFFICIENCY_1X1 = 0.7
L2_BUDGET = 256 * 1024  # bytes of input rows that should stay in a core's L2 across channel blocks


def vector_registers(lanes: int) -> int:
    """SIMD registers of the ISA with `lanes` fp32 lanes: 32 zmm (AVX-512), else 16 (AVX2)."""
    return 32 if lanes >= 16 else 16


def tile_cycles_per_fma(vecs: int, cols: int) -> float:
    """Cycles per vector FMA of a `cols` x `vecs`-vector register tile in steady state.

    Each step (one input channel, one tap) loads `vecs` weight vectors and `cols` broadcast
    inputs and issues vecs*cols FMAs on independent accumulators: bound by the 2 FMA
    pipes, the 2 load ports, or the FMA latency when there are too few accumulators.
    """
    fmas = vecs * cols
    return max(fmas / 2, (vecs + cols) / 2, FMA_LATENCY) / fmas


@dataclass(frozen=True)
class BlockedConvPlan:
    """Block sizes of the blocked conv.

    ic_bn: input channels per packed block (divides C/group).
    oc_bn: output channels per block (half a SIMD vector, or 1, 2 or 4 vectors).
    reg_n: output columns per register tile.
    mg_padded: output channels per group rounded up to a multiple of oc_bn.
    cols_padded: output columns rounded up to a multiple of reg_n.
    slowdown: executed over useful work, from padding and the tile's cycles per FMA
        (1.0 = no padding and the FMA pipes saturated).
    """

    ic_bn: int
    oc_bn: int
    reg_n: int
    mg_padded: int
    cols_padded: int
    slowdown: float


def _pick_ic_block(cg: int, limit: int = 16) -> int:
    """Largest divisor of cg <= limit; a larger divisor when that one is uselessly small."""
    small = max(d for d in range(1, min(cg, limit) + 1) if cg % d == 0)
    if small >= 8 or cg <= limit:
        return small
    return min(d for d in range(8, cg + 1) if cg % d == 0)


def plan_blocked_conv(g: ConvGeometry, lanes: int, exact_columns: bool = False,
                      whole_vectors: bool = False) -> BlockedConvPlan:
    """Choose block sizes for the blocked conv of geometry `g` with `lanes` SIMD lanes.

    Among output-channel blocks of half, 1, 2 or 4 vectors and tiles of up to
    MAX_TILE_COLUMNS columns that fit the register file (accumulators, two sets of weight
    vectors, as LLVM loads the next step's early, and three more for broadcasts: a 14x32
    tile that leaves no room for those spills and ran 1.5x slower than 8x32), take the one
    with the least time per useful FMA: the tile's cycles per FMA times the padding of the
    channels and of the columns (output width tails). Ties go to the larger tile (more
    reuse of each loaded weight).

    Args:
        g: the conv geometry.
        lanes: fp32 SIMD lanes.
        exact_columns: only tiles that divide the output width (the conv then reads the
            unpadded input directly).
        whole_vectors: only blocks of whole vectors (the output is written NCHW{lanes}c).
    Returns:
        the plan.
    """
    mg, cols = g.m // g.groups, g.ow
    registers = vector_registers(lanes)
    best = None
    for oc_bn in (lanes, 2 * lanes, 4 * lanes) if whole_vectors else (lanes // 2, lanes, 2 * lanes, 4 * lanes):
        vecs = max(1, oc_bn // lanes)
        half = lanes / oc_bn if oc_bn < lanes else 1.0  # a half vector does half the work per FMA
        for n in range(1, min(cols, MAX_TILE_COLUMNS) + 1):
            if vecs * n + 2 * vecs + 3 > registers:
                break
            if exact_columns and cols % n:
                continue
            slow = (tile_cycles_per_fma(vecs, n) * 2 * half * round_up(mg, oc_bn) / mg
                    * round_up(cols, n) / cols)
            key = (round(slow, 6), -vecs * n, oc_bn)
            if best is None or key < best[0]:
                best = key, oc_bn, n, slow
    _, oc_bn, reg_n, slow = best
    return BlockedConvPlan(_pick_ic_block(g.c // g.groups), oc_bn, reg_n, round_up(mg, oc_bn),
                           round_up(cols, reg_n), slow)


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


def _blocked_weight_operand(n: LowerNode, g: ConvGeometry, p: BlockedConvPlan):
    """`_weight_operand` for the [G, Mg_pad/ocb, Cg/icb, kH, kW, icb, ocb] layout."""
    from tvm import tirx

    cg, mg = g.c // g.groups, g.m // g.groups

    def pack_te(w):
        def value(gi, oc, ic, ry, rx, icb, ocb):
            m = oc * p.oc_bn + ocb
            return tirx.if_then_else(m < mg, w[gi * mg + m, ic * p.ic_bn + icb, ry, rx], tirx.const(0, w.dtype))
        return value

    shape = (g.groups, p.mg_padded // p.oc_bn, cg // p.ic_bn, g.kh, g.kw, p.ic_bn, p.oc_bn)
    return _weight_operand(n, shape, lambda w: pack_weight_blocked(w, g.groups, p), pack_te)


def _pad_pack_input(read_x, dtype: str, g: ConvGeometry, hp: int, wp: int, c_bn: int, cg: int):
    """x (read_x(n, c, h, w), NCHW or blocked) -> [N, G, ceil(Cg/c_bn), hp, wp, c_bn] with the conv's zero padding applied
    (and zero channels past C when c_bn does not divide the channel count). Only the bounds
    that can be crossed are tested: an unpadded input packs without a predicate."""
    from tvm import te, tirx

    def value(b, gi, cc, y, xx, cb):
        ch = gi * cg + cc * c_bn + cb
        tests = [(g.pt > 0, y >= g.pt), (hp > g.pt + g.h, y < g.pt + g.h),
                 (g.pl > 0, xx >= g.pl), (wp > g.pl + g.w, xx < g.pl + g.w), (cg % c_bn != 0, ch < g.c)]
        inside = [t for needed, t in tests if needed]
        v = read_x(b, ch, y - g.pt, xx - g.pl)
        return tirx.if_then_else(tirx.all(*inside), v, tirx.const(0, dtype)) if inside else v

    return te.compute((g.n, g.groups, -(-cg // c_bn), hp, wp, c_bn), value, name="data_pack")


def _padded_input_extent(out: int, stride: int, k: int, dil: int) -> int:
    return (out - 1) * stride + (k - 1) * dil + 1


def _unpack_output(conv, g: ConvGeometry, mg: int, oc_bn: int, epilogue: ConvEpilogue, out_block: int = 0):
    """Blocked conv result [N, G, Mg/oc_bn, OH, OWp, k, oc_bn/k] -> NCHW (k = 1), or
    NCHW{out_block}c (one group, k = oc_bn/out_block vectors of out_block channels: TVM's
    region analysis cannot invert `co % k * out_block + ci`, so the conv keeps k as an axis),
    dropping padded channels/columns, through the epilogue (bias, residual, fused activation)."""
    from tvm import te

    if out_block:
        k = oc_bn // out_block
        return te.compute(
            (g.n, g.m // out_block, g.oh, g.ow, out_block),
            lambda b, co, y, xx, ci: epilogue(conv[b, 0, co // k, y, xx, co % k, ci],
                                              b, co * out_block + ci, y, xx), name="unpack")

    def value(b, m, y, xx):
        gi, mm = (m // mg, m % mg) if mg < g.m else (0, m)  # no `m % M`: region analysis rejects it
        return epilogue(conv[b, gi, mm // oc_bn, y, xx, 0, mm % oc_bn], b, m, y, xx)

    return te.compute((g.n, g.m, g.oh, g.ow), value, name="unpack")


def _schedule_unpack(sch, lanes: int):
    """Parallel over (n, channel (block), row); NCHW rows are short, left to LLVM; a blocked
    output's channels are one vector."""
    loops = sch.get_loops(sch.get_sblock("unpack"))
    sch.parallel(sch.fuse(*loops[:3]))
    if len(loops) == 5:
        sch.vectorize(loops[-1])
    elif sch.get(loops[-1]).extent.value % lanes == 0:
        sch.vectorize(sch.split(loops[-1], [None, lanes])[1])


def _schedule_pack(sch, name: str):
    loops = sch.get_loops(sch.get_sblock(name))
    sch.parallel(sch.fuse(*loops[:4]))


def rows_per_block(g: ConvGeometry, p: BlockedConvPlan) -> int:
    """How many output rows each pass over all the output-channel blocks covers; 0 when the
    output-channel loop should stay outermost.

    Output-channel blocks outermost read the whole input once per block (each block's
    weights stay in cache); rows outermost, in blocks whose input strip fits L2_BUDGET,
    read the input once and all the weights once per row block (GEMM-style blocking, good
    for 1x1 convs, whose weights are small next to their input). The order with the least
    traffic wins.
    """
    cg = g.c // g.groups
    row_bytes = cg * _padded_input_extent(p.cols_padded, g.sw, g.kw, g.dw) * 4
    input_bytes = g.n * g.c * min(g.h, g.oh * g.kh) * g.w * 4  # rows a strided 1x1 skips are not read
    weight_bytes = g.groups * p.mg_padded * cg * g.kh * g.kw * 4
    fits = [r for r in range(1, g.oh + 1)
            if g.oh % r == 0 and r * g.sh + (g.kh - 1) * g.dh <= max(1, L2_BUDGET // row_bytes)]
    if not fits:
        return 0
    rows = max(fits)
    oc_outer = weight_bytes + (p.mg_padded // p.oc_bn) * input_bytes
    rows_outer = input_bytes + g.oh // rows * weight_bytes
    return rows if rows_outer < oc_outer else 0


def _schedule_direct(n: LowerNode, p: BlockedConvPlan, rows: int, unpacked: bool, direct_write: bool,
                     out_block: int):
    """Schedule of the blocked conv "conv" (loops b, gi, oc, y, x, k, ob; rc, ry, rx) and its
    unpack (written from the register tile when `direct_write`, else a separate pass).

    The register tile (reg_n columns x oc_bn lanes) accumulates in a local buffer over the
    reduction, input channels innermost-blocked by ic_bn and unrolled; the loops above the
    tile are fused and parallel, in the order `rows_per_block` chose.
    """
    def apply(sch):
        blk = sch.get_sblock("conv")
        acc = sch.cache_write(blk, 0, "local")
        b, gi, oc, y, xx, kk, ob, rc, ry, rx = sch.get_loops(blk)
        xo, xi = sch.split(xx, [None, p.reg_n])
        rco, rci = sch.split(rc, [None, p.ic_bn])
        if rows:
            yb, y = sch.split(y, [None, rows])
            outer = [b, gi, yb, oc, y]
        else:
            outer = [b, gi, oc, y]
        sch.reorder(*outer, xo, rco, ry, rx, rci, xi, kk, ob)
        sch.unroll(rci)
        sch.unroll(xi)
        sch.unroll(kk)
        sch.vectorize(ob)
        sch.parallel(sch.fuse(*outer))
        sch.decompose_reduction(blk, rco)
        if direct_write:
            # the tile goes from registers straight to NCHW (+bias): no blocked output in memory
            # and no separate unpack pass (measured 1.6x faster on a 1x1 64->256 conv at 56x56)
            sch.compute_inline(acc)
            sch.reverse_compute_at(sch.get_sblock("unpack"), xo)
            tile = sch.get_loops(sch.get_sblock("unpack"))[-(3 if out_block else 2):]
            for loop in tile:  # channels x columns of the tile (x channels in a block, vectorized)
                sch.unroll(loop)  # straight-line stores: 6-10% faster than loops (r50 stem, 1x1 64->256)
            if out_block:
                sch.vectorize(tile[-1])
        else:
            sch.reverse_compute_at(acc, xo)
            sch.vectorize(sch.get_loops(acc)[-1])
            _schedule_unpack(sch, n.target.vector_lanes)
        if not unpacked:
            _schedule_pack(sch, "data_pack")
        if not n.inputs[1].is_constant:
            _schedule_pack(sch, "w_pack")
    return apply


def _direct_kernel(n: LowerNode, g: ConvGeometry) -> Kernel:
    """The blocked direct conv's Kernel (the 1x1 GEMM reads x unpacked); executed FLOPs
    (with padding and the tile's slowdown) in extra["flops"] for the cost model."""
    from tvm import te

    unpacked = _is_1x1_gemm(g, n.target.vector_lanes)
    out_block = n.out_block if g.groups == 1 and g.m % max(n.out_block, 1) == 0 else 0
    p = plan_blocked_conv(g, n.target.vector_lanes, exact_columns=unpacked, whole_vectors=out_block > 0)
    out_block = out_block if p.oc_bn % max(out_block, 1) == 0 else 0
    cg, mg = g.c // g.groups, g.m // g.groups
    x, read_x = n.reader(0, "x")
    if unpacked:  # a 1x1 conv reads its input as it is: the broadcasts of a tile are one row's pixels
        def data_at(b, gi, c, y, xx):
            return read_x(b, gi * cg + c, y, xx)
    else:
        data = _pad_pack_input(read_x, x.dtype, g, _padded_input_extent(g.oh, g.sh, g.kh, g.dh),
                               _padded_input_extent(p.cols_padded, g.sw, g.kw, g.dw), p.ic_bn, cg)

        def data_at(b, gi, c, y, xx):
            return data[b, gi, c // p.ic_bn, y, xx, c % p.ic_bn]
    w_ph, w_arg, w = _blocked_weight_operand(n, g, p)
    rc = te.reduce_axis((0, cg), name="rc")
    ry = te.reduce_axis((0, g.kh), name="ry")
    rx = te.reduce_axis((0, g.kw), name="rx")
    k = p.oc_bn // out_block if out_block else 1  # vectors per output-channel block, as an axis
    conv = te.compute(
        (g.n, g.groups, p.mg_padded // p.oc_bn, g.oh, p.cols_padded, k, p.oc_bn // k),
        lambda b, gi, oc, y, xx, kk, ob: te.sum(
            data_at(b, gi, rc, y * g.sh + ry * g.dh, xx * g.sw + rx * g.dw)
            * w[gi, oc, rc // p.ic_bn, ry, rx, rc % p.ic_bn, kk * (p.oc_bn // k) + ob], axis=[rc, ry, rx]),
        name="conv")
    epilogue = ConvEpilogue.of(n, read_blocks=True)
    y = _unpack_output(conv, g, mg, p.oc_bn, epilogue, out_block)
    ins, args = [x, w_ph] + epilogue.inputs, [0, w_arg] + epilogue.args
    rows = rows_per_block(g, p)
    stored = f"NCHW{n.input_block(0)}c" if n.input_block(0) else "NCHW"
    layout = (f"{stored}->", "1x1") if unpacked else (f"NCHW{p.ic_bn}c->", "direct")
    desc = (f"conv2d {layout[0]}NCHW{p.oc_bn}c {layout[1]}, tile {p.reg_n}x{p.oc_bn}, "
            f"{f'{rows}-row blocks outer' if rows else 'channel blocks outer'}, "
            f"{'pre-packed' if n.inputs[1].is_constant else 'packed'} weights")
    # A group whose output channels do not fill whole blocks (ShuffleNet: 34) cannot be written
    # to NCHW from the tile (TVM's region analysis rejects the nested channel index): unpack pass.
    direct_write = g.groups == 1 or mg % p.oc_bn == 0
    kernel = make_kernel(ins, [y], _schedule_direct(n, p, rows, unpacked, direct_write, out_block), args, desc)
    kernel.in_blocks, kernel.out_block = conv_in_blocks(n), out_block
    kernel.extra["flops"] = 2.0 * g.n * g.m * g.oh * g.ow * cg * g.kh * g.kw * p.slowdown
    return kernel


def _is_1x1_gemm(g: ConvGeometry, lanes: int) -> bool:
    """A 1x1 conv that reads no padding (any stride): a GEMM over a subsample of the pixels.
    Grouped ones only when a group's output channels fill whole vectors (ShuffleNet's 34
    per group do not: TVM cannot express that tile's write region)."""
    return (g.kh == g.kw == 1 and g.pt == g.pl == 0
            and (g.oh - 1) * g.sh < g.h and (g.ow - 1) * g.sw < g.w
            and (g.groups == 1 or (g.m // g.groups) % lanes == 0))


def _fast_conv_applies(n: LowerNode, g: ConvGeometry) -> bool:
    """float32 and not depthwise (its own rule)."""
    return n.outputs[0].dtype == "float32" and not (g.c == g.m == g.groups > 1)


@rule("Conv", name="conv2d-1x1", family="direct", efficiency=EFFICIENCY_1X1)
def conv2d_1x1(n: LowerNode) -> Kernel | None:
    """float32 1x1 Conv reading no padding (any stride: ResNet's projections too): a GEMM of
    the pixels (rows x column tiles, the M dimension) by the blocked weights, reading x as it
    is (no packing) and usually blocked rows-outer (see `rows_per_block`)."""
    g = ConvGeometry.of(n)
    return _direct_kernel(n, g) if _fast_conv_applies(n, g) and _is_1x1_gemm(g, n.target.vector_lanes) else None


@rule("Conv", name="conv2d-nchwc-direct", family="direct", efficiency=EFFICIENCY_DIRECT)
def conv2d_nchwc_direct(n: LowerNode) -> Kernel | None:
    """float32 Conv (any stride/pad/dilation/groups except depthwise and the 1x1 GEMM) as a
    blocked direct conv."""
    g = ConvGeometry.of(n)
    return (_direct_kernel(n, g) if _fast_conv_applies(n, g) and not _is_1x1_gemm(g, n.target.vector_lanes)
            else None)


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
    x, read_x = n.reader(0, "x")
    data = _pad_pack_input(read_x, x.dtype, flat, _padded_input_extent(g.oh, g.sh, g.kh, g.dh),
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
        (g.n, 1, cp // lanes, g.oh, owp, 1, lanes),
        lambda b, gi, cb, y, xx, _, c: te.sum(
            data[b, gi, cb, y * g.sh + ry * g.dh, xx * g.sw + rx * g.dw, c] * wp_t[cb, ry, rx, c], axis=[ry, rx]),
        name="conv")
    epilogue = ConvEpilogue.of(n, read_blocks=True)
    out_block = lanes if n.out_block == lanes else 0  # channels are blocked by the lanes already
    y = _unpack_output(conv, flat, cp, lanes, epilogue, out_block)
    ins, args = [x, w_ph] + epilogue.inputs, [0, w_arg] + epilogue.args

    def schedule(sch):
        schedule_depthwise_tile(sch, reg_n)
        _schedule_pack(sch, "data_pack")
        if not n.inputs[1].is_constant:
            _schedule_pack(sch, "w_pack")
        _schedule_unpack(sch, lanes)

    kernel = make_kernel(ins, [y], schedule, args, f"depthwise conv2d NCHW{lanes}c, tile {reg_n}x{lanes}")
    kernel.in_blocks, kernel.out_block = conv_in_blocks(n), out_block
    return kernel


@rule("Conv", fallback=True)
def conv2d_fallback(n: LowerNode) -> Kernel:
    """Any Conv the fast rules do not take (other dtypes)."""
    return conv2d_generic(n)


def schedule_depthwise_tile(sch, reg_n: int):
    """The "conv" block of a channel-blocked depthwise conv [N, 1, C/lanes, OH, OWp, 1, lanes]:
    register tiles of `reg_n` columns x lanes channels, taps innermost but the columns, parallel
    over (image, channel block, row). Shared by the float and the int8 depthwise rules."""
    blk = sch.get_sblock("conv")
    acc = sch.cache_write(blk, 0, "local")
    b, gi, cb, yy, xx, one, c, ry_, rx_ = sch.get_loops(blk)
    xo, xi = sch.split(xx, [None, reg_n])
    sch.reorder(b, gi, cb, yy, xo, ry_, rx_, xi, one, c)
    sch.reverse_compute_at(acc, xo)
    sch.unroll(rx_)
    sch.unroll(xi)
    sch.vectorize(c)
    sch.parallel(sch.fuse(b, gi, cb, yy))
    sch.decompose_reduction(blk, ry_)
    sch.vectorize(sch.get_loops(acc)[-1])
