"""Fused-layer convolution (Alwani et al., "Fused-Layer CNN Accelerators", MICRO 2016):
one kernel computes a chain of convs (and a trailing MaxPool) strip by strip.

The final output is cut into strips of `tile_rows` rows, and the strips of an image into
`bands` contiguous runs: one parallel task per (image, band) walks its strips in order.
Each task owns one line buffer per tensor of the chain (x, then each conv's output but
the last), allocated once: a ring of as many rows as one strip's pyramid needs, row g
at ring row g mod height, in channel blocks with the consumer's zero padding built in:

    x NCHW --new rows--> X [C/b0, R0, pl+W+pr, b0] --conv--> T1 [M1/b1, R1, W1p, b1] --conv--> ...
        --> last conv (or MaxPool) rows of the strip --> y NCHW

For each strip every layer computes the rows of its window (ir/ops/fused.py
`strip_windows`) that are not in its ring yet: with halo="reuse" only the rows past the
previous strip's window, with halo="recompute" all of them (the rows two pyramids share
computed twice). Rows of a window outside the image are written as zeros (they are the
consumer's padding); padding columns are zeroed once per task and never written, so the
convs read no index clamps or masks.

Each conv is a blocked direct conv with conv2d.py's register tile (`plan_blocked_conv`):
`reg_n` columns x `cb` output channels accumulated in registers over the input channels
and taps, one broadcast input value per column and input channel, plus one narrower tile
for the columns left over (no padded columns computed).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.ops.fused import layer_row_geometry, layer_steps, layer_types, strip_windows, strips_per_band, \
    tile_row_extents
from .conv2d import plan_blocked_conv, tile_cycles_per_fma, vector_registers
from .conv2d_generic import ConvGeometry
from .elementwise import relu
from .kernel import Kernel, LowerNode
from .rules import rule
from .schedule_tiles import round_up

_ACTIVATIONS = {"": lambda v: v, "Relu": relu}
MAX_TILE_COLUMNS = 14
MAX_INPUT_BLOCK = 16  # channels per block of x's line buffer
# input channels unrolled in the conv's inner loop: with 16 (x an 8x32 tile: 256 FMAs) LLVM hoists
# the broadcasts and spills them, and ResNet-50's 1x1+3x3 pair ran 1.3x slower than with 4
MAX_UNROLLED_CHANNELS = 4
# fraction of peak FLOPs. The kernel runs 1.3-1.4x the FLOP rate of conv2d.py's direct convs (VGG-19
# blocks 1-2, ResNet-50's first 1x1+3x3; benchmarks/fusion.py), but against the codegen's estimates of
# the unfused nodes (Winograd for most 3x3 convs) 1.0 was optimistic: `auto` then fused DenseNet-121's
# six 1x1+3x3 pairs at 56x56 (estimated 4-11% faster) and the model ran 7% slower (52.1 -> 55.7 ms),
# and those pairs measured 1.2-1.3x slower fused. 0.7 keeps every light-zoo chain unfused.
EFFICIENCY_FUSED_LAYER = 0.7


@dataclass(frozen=True)
class Stage:
    """One layer of the chain as the kernel computes it.

    op: "Conv" or "MaxPool". k, s: window (rows, cols) and strides. pt: top pad.
    out: output (C, H, W). cb: output channel block (the block of the line buffer it
    writes). reg_n: register tile columns. activation: the conv's.
    """

    op: str
    k: tuple
    s: tuple
    pt: int
    out: tuple
    cb: int
    reg_n: int
    activation: str = ""


@dataclass(frozen=True)
class LineBuffer:
    """The ring of rows of one tensor of the chain (x or a conv output read by the next layer).

    channels, height, width: of the tensor. block: channels per block (innermost).
    rows: ring height. pl, pr: the consumer's left/right zero padding, stored.
    """

    channels: int
    height: int
    width: int
    block: int
    rows: int
    pl: int
    pr: int

    @property
    def shape(self) -> tuple:
        return (self.channels // self.block, self.rows, self.pl + self.width + self.pr, self.block)


def _channel_block(m: int, lanes: int) -> int:
    """Largest power of two <= 2 vectors dividing m (1 when m is odd)."""
    cb = 2 * lanes
    while m % cb:
        cb //= 2
    return cb


def _register_columns(width: int, cb: int, lanes: int) -> int:
    """Tile columns with the least time per useful FMA (tile_cycles_per_fma x column padding)."""
    vecs = max(1, cb // lanes)
    fits = [n for n in range(1, MAX_TILE_COLUMNS + 1) if vecs * n + 2 * vecs + 3 <= vector_registers(lanes)]
    return min(fits, key=lambda n: (tile_cycles_per_fma(vecs, n) * round_up(width, n) / width, -n))


def _input_block(c: int) -> int:
    """Channels per block of x's line buffer: the largest divisor of c up to MAX_INPUT_BLOCK."""
    return max(d for d in range(1, min(c, MAX_INPUT_BLOCK) + 1) if c % d == 0)


def _conv_tile(c, hw, m, k, s, pads, out_hw, lanes) -> tuple:
    """(cb, reg_n): conv2d.py's register tile for this conv, when its channel block divides m;
    else the largest power-of-two block dividing m and its best column count."""
    g = ConvGeometry(1, c, *hw, m, *k, *s, 1, 1, pads[0], pads[1], 1, *out_hw)
    p = plan_blocked_conv(g, lanes)
    if p.mg_padded == m:
        return p.oc_bn, p.reg_n
    cb = _channel_block(m, lanes)
    return cb, _register_columns(out_hw[1], cb, lanes)


def plan(n: LowerNode) -> tuple:
    """(stages, line buffers) of FusedLayerConv node `n`: buffers[j] is what layer j reads."""
    types = [i.type for i in n.inputs]
    outs = layer_types(types, n.attrs)
    extents = tile_row_extents(types, n.attrs)
    lanes = n.target.vector_lanes
    x = types[0].shape
    stages, buffers = [], []
    channels, hw, block = x[1], x[2:], _input_block(x[1])
    for j, (op, a) in enumerate(layer_steps(len(types) // 2, n.attrs)):
        pads = a.get("pads", (0, 0, 0, 0))
        k = tuple(a["kernel_shape"]) if op == "MaxPool" else tuple(types[1 + 2 * j].shape[2:])
        out = outs[j].shape[1:]
        buffers.append(LineBuffer(channels, hw[0], hw[1], block, extents[j], pads[1], pads[3]))
        cb, reg_n = (_conv_tile(channels, hw, out[0], k, a["strides"], pads, out[1:], lanes) if op == "Conv"
                     else (block, 1))  # a pool keeps its input's channels, hence its block
        stages.append(Stage(op, k, tuple(a["strides"]), pads[0], out, cb, reg_n, a.get("activation", "")))
        channels, hw, block = out[0], out[1:], cb
    return stages, buffers


def _pack_weight(w: np.ndarray, icb: int, cb: int) -> np.ndarray:
    """OIHW -> [M/cb, C/icb, kH, kW, icb, cb]: a tile's weights for one input block are contiguous."""
    m, c, kh, kw = w.shape
    return np.ascontiguousarray(w.reshape(m // cb, cb, c // icb, icb, kh, kw).transpose(0, 2, 4, 5, 3, 1))


def _floormod(a, b: int):
    from tvm import tirx

    return tirx.floormod(a, b)


def _zero_rows(T, buf, lb: LineBuffer, start, stop):
    """Rows [start, stop) of line buffer `buf`: zeros over the whole width (consumer's padding)."""
    from tvm import tirx

    with T.serial(start, tirx.max(start, stop)) as g:
        with T.serial(0, lb.shape[0]) as cc:
            with T.serial(0, lb.shape[2]) as q:
                with T.vectorized(0, lb.block) as ci:
                    T.buffer_store(buf, tirx.const(0, "float32"), [cc, _floormod(g, lb.rows), q, ci])


def _emit_rows(T, start, stop, height: int, buf, lb: LineBuffer | None, emit_rows):
    """emit_rows(lo, hi) for the rows of [start, stop) inside [0, height); the others zeroed in `buf`."""
    from tvm import tirx

    inside_lo = tirx.max(start, 0)
    if lb is not None:
        _zero_rows(T, buf, lb, start, tirx.min(stop, 0))
    emit_rows(inside_lo, tirx.max(inside_lo, tirx.min(stop, height)))
    if lb is not None:
        _zero_rows(T, buf, lb, tirx.max(start, height), stop)


def _emit_stage_x(T, x, b, buf, lb: LineBuffer, start, stop):
    """x rows [start, stop) into its line buffer (channels blocked, padding columns left zero)."""
    def rows(lo, hi):
        with T.serial(lo, hi) as g, T.serial(0, lb.channels) as c:
            with T.vectorized(0, lb.width) as q:
                T.buffer_store(buf, x[b, c, g, q], [c // lb.block, _floormod(g, lb.rows), lb.pl + q, c % lb.block])
    _emit_rows(T, start, stop, lb.height, buf, lb, rows)


def _emit_conv(T, src, src_lb: LineBuffer, st: Stage, w, bias, store, dst, dst_lb, start, stop):
    """Conv rows [start, stop) of its output from the line buffer `src`; each value goes
    through `store(mo, g, q, mi, value)`; rows outside the output are zeroed in `dst`."""
    icb = src_lb.block
    inner = max(d for d in range(1, min(icb, MAX_UNROLLED_CHANNELS) + 1) if icb % d == 0)
    act = _ACTIVATIONS[st.activation]
    (kh, kw), (sh, sw) = st.k, st.s
    full, tail = divmod(st.out[2], st.reg_n)

    def tile(mo, g, q0, cols):
        acc = T.decl_buffer((cols, st.cb), "float32", scope="local")
        with T.unroll(0, cols) as qi:
            with T.vectorized(0, st.cb) as mi:
                T.buffer_store(acc, bias[mo * st.cb + mi], [qi, mi])
        with T.serial(0, src_lb.channels // icb) as rco:
            with T.serial(0, kh) as ry:
                row = _floormod(g * sh - st.pt + ry, src_lb.rows)
                with T.serial(0, kw) as rx:
                    with T.serial(0, icb // inner) as rcm:
                        with T.unroll(0, inner) as rci:
                            with T.unroll(0, cols) as qi:
                                with T.vectorized(0, st.cb) as mi:
                                    ci = rcm * inner + rci
                                    v = src[rco, row, (q0 + qi) * sw + rx, ci] * w[mo, rco, ry, rx, ci, mi]
                                    T.buffer_store(acc, acc[qi, mi] + v, [qi, mi])
        with T.unroll(0, cols) as qi:
            with T.vectorized(0, st.cb) as mi:
                store(mo, g, q0 + qi, mi, act(acc[qi, mi]))

    def rows(lo, hi):  # channel blocks outermost: a block's weights serve all the strip's new rows
        with T.serial(0, st.out[0] // st.cb) as mo, T.serial(lo, hi) as g:
            if full:
                with T.serial(0, full) as t:
                    tile(mo, g, t * st.reg_n, st.reg_n)
            if tail:
                tile(mo, g, full * st.reg_n, tail)
    _emit_rows(T, start, stop, st.out[1], dst, dst_lb, rows)


def _emit_pool(T, src, src_lb: LineBuffer, st: Stage, store, start, stop):
    """MaxPool rows [start, stop) of the final output from the last conv's line buffer."""
    from tvm import tirx

    (kh, kw), (sh, sw) = st.k, st.s

    def rows(lo, hi):
        with T.serial(lo, hi) as g, T.serial(0, src_lb.shape[0]) as mo:
            with T.serial(0, st.out[2]) as q:
                with T.vectorized(0, src_lb.block) as mi:
                    v = None
                    for ry in range(kh):
                        for rx in range(kw):
                            e = src[mo, _floormod(g * sh + ry, src_lb.rows), q * sw + rx, mi]
                            v = e if v is None else tirx.max(v, e)
                    store(mo, g, q, mi, v)
    _emit_rows(T, start, stop, st.out[1], None, None, rows)


def _emit(T, params, n: LowerNode, stages: list, buffers: list):
    """The kernel body: parallel over (image, band), strips in order, layer by layer."""
    from tvm import tirx

    x, *weights, y = params
    attrs = n.attrs
    batch = n.inputs[0].type.shape[0]
    out_rows = stages[-1].out[1]
    strips = -(-out_rows // attrs["tile_rows"])
    per_band = strips_per_band(out_rows, attrs)
    bands = -(-strips // per_band)
    geometry = layer_row_geometry([i.type for i in n.inputs], attrs)
    reuse = attrs["halo"] == "reuse"

    def windows(t):
        return strip_windows(t, attrs["tile_rows"], out_rows, geometry, tirx.min)

    with T.parallel(0, batch * bands) as task:
        b, band = task // bands, task % bands
        bufs = [T.decl_buffer(lb.shape, "float32") for lb in buffers]
        for buf, lb in zip(bufs, buffers):  # padding columns: zero for the whole task
            with T.serial(0, lb.shape[0]) as cc:
                with T.serial(0, lb.rows) as r:
                    with T.serial(0, lb.shape[2]) as q:
                        with T.vectorized(0, lb.block) as ci:
                            T.buffer_store(buf, tirx.const(0, "float32"), [cc, r, q, ci])
        with T.serial(0, tirx.min(per_band, strips - band * per_band)) as i:
            t = band * per_band + i
            now = windows(t)
            done = windows(t - 1)

            def start(j):
                lo = now[j][0]
                return tirx.Select(i == 0, lo, tirx.max(lo, done[j][1])) if reuse else lo

            _emit_stage_x(T, x, b, bufs[0], buffers[0], start(0), now[0][1])
            for j, st in enumerate(stages):
                last = j == len(stages) - 1
                if last:
                    def store(mo, g, q, mi, v, cb=st.cb):
                        T.buffer_store(y, v, [b, mo * cb + mi, g, q])
                    dst, dst_lb = None, None
                else:
                    dst, dst_lb = bufs[j + 1], buffers[j + 1]

                    def store(mo, g, q, mi, v, buf=dst, lb=dst_lb):
                        T.buffer_store(buf, v, [mo, _floormod(g, lb.rows), lb.pl + q, mi])
                if st.op == "MaxPool":
                    _emit_pool(T, bufs[j], buffers[j], st, store, start(j + 1), now[j + 1][1])
                else:
                    _emit_conv(T, bufs[j], buffers[j], st, weights[2 * j], weights[2 * j + 1], store, dst, dst_lb,
                               start(j + 1), now[j + 1][1])


@rule("FusedLayerConv", name="conv2d-fused-layer", family="fused-layer", efficiency=EFFICIENCY_FUSED_LAYER)
def conv2d_fused_layer(n: LowerNode) -> Kernel | None:
    """float32 FusedLayerConv with constant weights: bands of strips, each strip from its
    pyramid, through per-task line buffers."""
    if n.outputs[0].dtype != "float32" or not all(i.is_constant for i in n.inputs[1:]):
        return None
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T

    stages, buffers = plan(n)
    args, types = [0], [n.inputs[0].type.shape]
    for j, st in enumerate(stages):
        if st.op == "Conv":
            packed = _pack_weight(n.inputs[1 + 2 * j].data, buffers[j].block, st.cb)
            args += [packed, 2 + 2 * j]
            types += [packed.shape, n.inputs[2 + 2 * j].type.shape]
    types.append(n.outputs[0].shape)
    with IRBuilder() as ib:
        with T.prim_func():
            T.func_attr({"tirx.noalias": True})
            params = [T.arg(f"p{i}", T.buffer(s, "float32")) for i, s in enumerate(types)]
            _emit(T, params, n, stages, buffers)
    desc = (f"fused {len(stages)} layers, strips of {n.attrs['tile_rows']} rows in {n.attrs['bands']} bands, "
            f"halo {n.attrs['halo']}d, line buffers {[lb.rows for lb in buffers]} rows, "
            f"tiles {[f'{s.reg_n}x{s.cb}' for s in stages if s.op == 'Conv']}")
    return Kernel(ib.get(), args, desc)
