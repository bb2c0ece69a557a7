"""Fused-layer convolution (Alwani et al., "Fused-Layer CNN Accelerators", MICRO 2016):
one kernel computes a chain of convs (and a trailing MaxPool) strip by strip.

The final output is cut into strips of `tile_rows` rows. For each strip (one parallel
task) every layer computes only the rows the next layer's windows need, the strip's
pyramid, into a small per-task buffer with the next layer's zero padding built in:

    x NCHW --rows of the pyramid--> X [C, E0, W0p] --conv--> T1 [M1/cb, E1, W1p, cb] --conv--> ...
        --> last conv (or MaxPool) rows of the strip --> y NCHW

so intermediate feature maps never go to memory as whole tensors. Rows shared by two
neighbouring pyramids (the halo) are recomputed by both: the pass picks the strip height
so that this overhead is small and the buffers fit the L2 cache.

Every buffer is indexed by the strip number, which makes each stage's region per strip a
constant-size box: `compute_at` on the strip loop then shrinks each buffer to one strip.
Each conv stage is a blocked direct conv: a register tile of `reg_n` columns x `cb` output
channels (vectorized), reading one broadcast input value per column and input channel.
Rows of a pyramid outside the image and columns outside it (or past the padded tile
width) are computed on clamped indices and then masked to the padding value 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.ops.fused import layer_steps, layer_types, tile_row_extents
from .conv2d import tile_cycles_per_fma, vector_registers
from .elementwise import relu
from .kernel import Kernel, LowerNode
from .rules import make_kernel, rule
from .schedule_tiles import round_up

_ACTIVATIONS = {"": lambda v: v, "Relu": relu}
MAX_TILE_COLUMNS = 14
# fraction of peak FLOPs: below the single-conv kernels' (conv2d.py), as measured against them on
# VGG-19 block 1 and DenseNet-121's 1x1-3x3 pairs (benchmarks/fusion.py: parity to 0.8x)
EFFICIENCY_FUSED_LAYER = 0.7


@dataclass(frozen=True)
class Stage:
    """One layer of the chain as the kernel computes it.

    op: "Conv" or "MaxPool". k, s: window (rows, cols) and strides. pt, pl: top/left pad.
    out: output (C, H, W). cb: channel block. reg_n: register tile columns.
    rows: pyramid rows per strip. width: columns computed (padded for the consumer).
    pad_next: the consumer's (top, left) padding, stored in this stage's buffer.
    """

    op: str
    k: tuple
    s: tuple
    pt: int
    pl: int
    out: tuple
    cb: int
    reg_n: int
    rows: int
    width: int
    pad_next: tuple
    activation: str = ""


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


def plan_stages(n: LowerNode) -> list:
    """The stages of FusedLayerConv node `n`, planned last to first (a stage's buffer width
    is what its consumer reads)."""
    types = [i.type for i in n.inputs]
    outs = layer_types(types, n.attrs)
    steps = layer_steps(len(types) // 2, n.attrs)
    extents = tile_row_extents(types, n.attrs)
    lanes = n.target.vector_lanes
    stages: list = []
    need_cols, pad_next = outs[-1].shape[3], (0, 0)
    for j in reversed(range(len(steps))):
        op, a = steps[j]
        k = tuple(a["kernel_shape"]) if op == "MaxPool" else tuple(types[1 + 2 * j].shape[2:])
        pads = a.get("pads", (0, 0, 0, 0))
        c, h, w = outs[j].shape[1:]
        cb = _channel_block(c, lanes)  # a pool keeps its input's channels, hence its block
        reg_n = _register_columns(need_cols, cb, lanes) if op == "Conv" else 1
        width = round_up(need_cols, reg_n)
        stages.insert(0, Stage(op, k, tuple(a["strides"]), pads[0], pads[1], (c, h, w), cb, reg_n,
                               extents[j + 1], width, pad_next, a.get("activation", "")))
        need_cols = (w - 1) * a["strides"][1] + k[1]  # this layer's input columns, its padding included
        pad_next = (pads[0], pads[1])
    return stages


def _pack_weight(w: np.ndarray, cb: int) -> np.ndarray:
    """OIHW -> [M/cb, C, kH, kW, cb]."""
    m, c, kh, kw = w.shape
    return np.ascontiguousarray(w.reshape(m // cb, cb, c, kh, kw).transpose(0, 2, 3, 4, 1))


def _conv_stage(src, src_cb: int, wt, channels_in: int, st: Stage, name: str):
    """The conv sum of one stage over its strip buffer: [N, strips, M/cb, rows, width, cb]."""
    from tvm import te

    rc = te.reduce_axis((0, channels_in), name="rc")
    ry = te.reduce_axis((0, st.k[0]), name="ry")
    rx = te.reduce_axis((0, st.k[1]), name="rx")

    def column(q):  # unpadded output column of buffer column q, clamped into the image
        return te.max(te.min(q - st.pad_next[1], st.out[2] - 1), 0)

    shape = (src.shape[0], src.shape[1], st.out[0] // st.cb, st.rows, st.width, st.cb)
    return te.compute(shape, lambda b, t, mo, r, q, mi: te.sum(
        src[b, t, rc // src_cb, r * st.s[0] + ry, column(q) * st.s[1] + rx, rc % src_cb]
        * wt[mo, rc, ry, rx, mi], axis=[rc, ry, rx]), name=name)


def _masked_epilogue(conv, bias, st: Stage, start: tuple, name: str):
    """act(conv + bias) where the buffer position is inside the layer's output, else the
    consumer's zero padding; `start` = (step, back): strip t's first row is t*step - back."""
    from tvm import te, tirx

    step, back = start
    _, h, w = st.out

    def value(b, t, mo, r, q, mi):
        g, col = t * step - back + r, q - st.pad_next[1]
        v = _ACTIVATIONS[st.activation](conv[b, t, mo, r, q, mi] + bias[mo * st.cb + mi])
        return tirx.Select(tirx.all(g >= 0, g < h, col >= 0, col < w), v, tirx.const(0, "float32"))

    return te.compute(conv.shape, value, name=name)


def _pool_stage(src, st: Stage):
    """MaxPool (no padding) over the strip buffer of the last conv."""
    from tvm import te

    ry = te.reduce_axis((0, st.k[0]), name="ry")
    rx = te.reduce_axis((0, st.k[1]), name="rx")
    shape = (src.shape[0], src.shape[1], src.shape[2], st.rows, st.width, src.shape[5])
    return te.compute(shape, lambda b, t, mo, r, q, mi: te.max(
        src[b, t, mo, r * st.s[0] + ry, q * st.s[1] + rx, mi], axis=[ry, rx]), name="pool")


def _strip_starts(stages: list) -> list:
    """(step, back) per buffer: strip t covers rows from t*step - back of the unpadded output
    of x (first entry), then of each stage."""
    step, back = stages[-1].rows, 0
    starts = [(step, back)]
    for st in reversed(stages):
        step, back = step * st.s[0], back * st.s[0] + st.pt
        starts.insert(0, (step, back))
    return starts


def _stage_tensors(n: LowerNode, stages: list):
    """TE tensors of every stage; returns (placeholders, kernel args, output, [stage names])."""
    from tvm import te, tirx

    x = n.placeholder(0, "x")
    batch, c0, h0, w0 = n.inputs[0].type.shape
    tiles = -(-stages[-1].out[1] // stages[-1].rows)
    first = stages[0]
    starts = _strip_starts(stages)
    (step, back), pl = starts[0], first.pl

    def source(b, t, cc, r, q, _):
        g, col = t * step - back + r, q - pl
        inside = tirx.all(g >= 0, g < h0, col >= 0, col < w0)
        return tirx.if_then_else(inside, x[b, cc, g, col], tirx.const(0, "float32"))

    shape = (batch, tiles, c0, (first.rows - 1) * first.s[0] + first.k[0],
             (first.width - 1) * first.s[1] + first.k[1], 1)
    prev = te.compute(shape, source, name="tile_x")
    placeholders, args, names, prev_cb = [x], [0], ["tile_x"], 1
    for j, st in enumerate(stages):
        if st.op == "MaxPool":
            prev = _pool_stage(prev, st)
            names.append("pool")
            continue
        w_np = n.inputs[1 + 2 * j].data
        packed = _pack_weight(w_np, st.cb)
        wt = te.placeholder(packed.shape, dtype="float32", name=f"w{j}")
        bias = n.placeholder(2 + 2 * j, f"b{j}")
        placeholders += [wt, bias]
        args += [packed, 2 + 2 * j]
        conv = _conv_stage(prev, prev_cb, wt, w_np.shape[1], st, f"conv{j}")
        prev, prev_cb = _masked_epilogue(conv, bias, st, starts[j + 1], f"act{j}"), st.cb
        names += [f"conv{j}", f"act{j}"]
    rows = stages[-1].rows
    y = te.compute(n.outputs[0].shape, lambda b, m, g, q: prev[b, g // rows, m // prev_cb, g % rows, q,
                                                               m % prev_cb], name="y")
    return placeholders, args, y, names


def _schedule(stages: list, names: list):
    """Strips outermost and parallel; every stage computed per strip; register-tiled convs."""
    def apply(sch):
        y = sch.get_sblock("y")
        b, m, g, q = sch.get_loops(y)
        t, r = sch.split(g, [None, stages[-1].rows])
        sch.reorder(b, t, m, r, q)
        strip = sch.fuse(b, t)
        sch.parallel(strip)  # before compute_at: the reduction blocks under it fail the check after
        for name in reversed(names):
            sch.compute_at(sch.get_sblock(name), strip, preserve_unit_loops=True)
        for j, st in enumerate(stages):
            if st.op == "MaxPool":
                blk = sch.get_sblock("pool")
                *_, mi, ry, rx = sch.get_loops(blk)
                sch.reorder(ry, rx, mi)
                sch.vectorize(mi)
                sch.decompose_reduction(blk, ry)
                continue
            blk = sch.get_sblock(f"conv{j}")
            src_cb = 1 if j == 0 else stages[j - 1].cb
            acc = sch.cache_write(blk, 0, "local")
            qq, mi, rc, ry, rx = sch.get_loops(blk)[-5:]
            qo, qi = sch.split(qq, [None, st.reg_n])
            rco, rci = sch.split(rc, [None, src_cb])
            sch.reorder(qo, rco, ry, rx, rci, qi, mi)
            sch.unroll(rci)
            sch.unroll(qi)
            sch.vectorize(mi)
            sch.decompose_reduction(blk, rco)
            sch.compute_inline(acc)
            act = sch.get_sblock(f"act{j}")
            sch.reverse_compute_at(act, qo, preserve_unit_loops=True)
            a_q, a_mi = sch.get_loops(act)[-2:]
            sch.unroll(a_q)
            sch.vectorize(a_mi)
    return apply


@rule("FusedLayerConv", name="conv2d-fused-layer", family="fused-layer", efficiency=EFFICIENCY_FUSED_LAYER)
def conv2d_fused_layer(n: LowerNode) -> Kernel | None:
    """float32 FusedLayerConv with constant weights: strips of output rows, each from its pyramid."""
    if n.outputs[0].dtype != "float32" or not all(i.is_constant for i in n.inputs[1:]):
        return None
    stages = plan_stages(n)
    placeholders, args, y, names = _stage_tensors(n, stages)
    desc = (f"fused {len(stages)} layers in strips of {stages[-1].rows} rows (halo recomputed), "
            f"pyramid rows {[s.rows for s in stages]}, channel blocks {[s.cb for s in stages]}")
    return make_kernel(placeholders, [y], _schedule(stages, names), args, desc)
