"""Winograd F(2x2,3x3) and F(4x4,3x3) convolution for float32 NCHW (Lavin & Gray, 2016).

One PrimFunc, NCHW in and out; the weight transform U = G w G^T is done at compile time:

    x NCHW --pad+pack--> D [N, C/cb, nTH*m+2, nTW*m+2, cb]       (zeros past the image: tails)
      --V = B^T d B per tile--> V [a, a, C/cb, P, cb]            (P = N*nTH*nTW tiles)
      --a*a GEMMs with U--> M [a, a, P, K]                         (register tile p_t x co_t)
      --Y = A^T M A per tile--> Y [N, K/lanes, nTH*m, nTW*m, lanes]
      --unpack (+bias, activation)--> y NCHW or NCHW{lanes}c

When y is NCHW{lanes}c and the tiles cover it exactly, the inverse transform writes y (+bias,
activation) itself and there is no unpack pass. Each stage is one parallel loop over the whole
image, except on large images (V and M past the last-level cache: VGG's 224x224 and 112x112
layers), where one parallel loop over blocks of tile rows runs V, the GEMMs and the inverse
transform per block, so V and M of a block stay in L2 (`_row_block`; 1.1-1.4x at 64@224
and 128@112 on the 2-core Zen 5).

a = m + 2. The transforms are unrolled linear combinations with the constant matrices
folded in (zero terms skipped); they are vectorized over a channel block. Channels, tiles
and output channels are padded to the blocks with zeros, so the GEMM has no tails.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .conv2d_generic import ConvEpilogue, ConvGeometry, conv_in_blocks
from .kernel import Kernel, LowerNode
from .rules import make_kernel, rule
from .schedule_tiles import pick_tile, round_up, vectorize_row

# Fractions of peak, calibrated by benchmarks/conv.py against the direct conv's 0.8 (medians
# over the ResNet-50/VGG-19 3x3 layers on a 2-core AVX-512 Xeon, FLOPs as kernel.extra["flops"]).
EFFICIENCY = {2: 0.5, 4: 0.42}
CACHED_BYTES = 1 << 20  # transformed weights this small stay in a core's cache between calls
STAGED_BYTES = 8 << 20  # V (and M) of the whole image past this: stages stream them through DRAM
BLOCK_BYTES = 1 << 20  # V (and M) of one block of tile rows: about a core's L2
BLOCK_U_BYTES = 4 << 20  # transformed weights read once per block: from L3


@lru_cache(maxsize=None)
def winograd_matrices(m: int):
    """(A [a, m], B [a, a], G [a, 3]) in float64 for F(m x m, 3x3): Y = A^T [(G w G^T) * (B^T d B)] A."""
    from tvm.topi.nn.winograd_util import _cook_toom_convolution, _interpolation_points

    A, B, G = _cook_toom_convolution(_interpolation_points(m + 2), m, 3)
    return tuple(np.asarray(t, np.float64) for t in (A, B, G))


def transform_weight(w: np.ndarray, m: int) -> np.ndarray:
    """OIHW 3x3 weights -> U [a, a, C, M] = G w G^T, computed in float64, returned as w's dtype."""
    G = winograd_matrices(m)[2]
    return np.einsum("ek,oikl,nl->enio", G, w.astype(np.float64), G).astype(w.dtype)


def _lincomb(coefs, terms):
    """sum_i coefs[i] * terms[i] as a TE expression, zero coefficients skipped, +-1 without a multiply."""
    from tvm import tirx

    e = None
    for c, t in zip(coefs, terms):
        if c == 0:
            continue
        v = t if c == 1 else -t if c == -1 else t * tirx.const(float(c), "float32")
        e = v if e is None else e + v
    return e if e is not None else tirx.const(0.0, "float32")


def _lincomb_flops(coefs) -> int:
    nz = int(np.count_nonzero(coefs))
    return max(nz - 1, 0) + int(np.sum((coefs != 0) & (np.abs(coefs) != 1)))


def _select(idx, exprs):
    """exprs[idx] for a loop index that the schedule unrolls (the Select chain then folds away)."""
    from tvm import tirx

    e = exprs[-1]
    for i in range(len(exprs) - 2, -1, -1):
        e = tirx.Select(idx == i, exprs[i], e)
    return e


@dataclass(frozen=True)
class WinogradPlan:
    """Sizes of a Winograd conv.

    m: output tile; alpha = m + 2. nth, ntw: tiles per image; p: tiles in all, pp: padded to p_t.
    cb: input channel block (= SIMD lanes), cp: channels padded to it. co_t: output channels
    per GEMM register tile, kp: output channels padded to it. p_t: tiles per register tile.
    row_block: tile rows per block when all stages run per block of tile rows in one parallel
    loop (V and M of the block stay in cache), 0 when each stage runs over the whole image.
    """

    m: int
    alpha: int
    nth: int
    ntw: int
    p: int
    pp: int
    p_t: int
    cb: int
    cp: int
    co_t: int
    kp: int
    row_block: int = 0

    def flops(self, n_out: int) -> int:
        """FLOPs the kernel executes (padding included): transforms, GEMMs, bias (n_out elements)."""
        A, B, _ = winograd_matrices(self.m)
        a, m = self.alpha, self.m
        inp = 2 * a * sum(_lincomb_flops(B[:, j]) for j in range(a)) * self.pp * self.cp
        out = (a + m) * sum(_lincomb_flops(A[:, j]) for j in range(m)) * self.p * self.kp
        return inp + 2 * a * a * self.pp * self.cp * self.kp + out + n_out


def plan_winograd(g: ConvGeometry, m: int, lanes: int) -> WinogradPlan:
    """Block sizes for F(m x m, 3x3) of geometry `g` on a `lanes`-wide SIMD target."""
    nth, ntw = -(-g.oh // m), -(-g.ow // m)
    p = g.n * nth * ntw
    a, cp = m + 2, round_up(g.c, lanes)
    co_t = 2 * lanes if g.m > lanes else lanes
    # accumulators: p_t * co_t / lanes vectors, about 12 of AVX2's 16 and 24 of AVX-512's 32 registers
    max_tile = max(2, (12 if lanes <= 8 else 24) * lanes // co_t)
    row_block = _row_block(nth, ntw, 4 * a * a * max(cp, g.m), 4 * a * a * cp * g.m, max_tile)
    if row_block and g.m % co_t == 0:  # a block's GEMM covers whole register tiles: no padding
        p_t = _largest_divisor(row_block * ntw, max_tile)
    else:
        row_block, p_t = 0, pick_tile(p, max_tile, min_tile=2)
    return WinogradPlan(m, a, nth, ntw, p, round_up(p, p_t), p_t, lanes, cp, co_t, round_up(g.m, co_t),
                        row_block)


def _row_block(nth: int, ntw: int, tile_bytes: int, u_bytes: int, max_tile: int) -> int:
    """Tile rows per block for the per-block schedule (see WinogradPlan), or 0 to run stage by stage:
    only where V and M of the whole image (tile_bytes per tile) would not stay in the last-level
    cache while U is small enough to read again for every block; the block's V and M fit L2."""
    if nth * ntw * tile_bytes <= STAGED_BYTES or u_bytes > BLOCK_U_BYTES:
        return 0
    rows = [r for r in range(1, nth + 1) if nth % r == 0 and r * ntw * tile_bytes <= BLOCK_BYTES
            and _largest_divisor(r * ntw, max_tile) >= 4]
    return max(rows, default=0)


def _largest_divisor(n: int, limit: int) -> int:
    return max(d for d in range(1, limit + 1) if n % d == 0)


def winograd_applies(n: LowerNode) -> bool:
    """float32 3x3 stride-1 dilation-1 group-1 Conv with a constant weight."""
    g = ConvGeometry.of(n)
    return (n.outputs[0].dtype == "float32" and n.inputs[1].is_constant and g.groups == 1
            and (g.kh, g.kw, g.sh, g.sw, g.dh, g.dw) == (3, 3, 1, 1, 1, 1))


def conv2d_winograd(n: LowerNode, m: int) -> Kernel | None:
    """The Winograd F(m x m, 3x3) kernel for Conv node `n`, or None when it does not apply.

    Args:
        n: the Conv node (float32, 3x3, stride 1, dilation 1, group 1, constant weight).
        m: output tile size (2 or 4).
    Returns:
        the Kernel (extra["flops"]: FLOPs it executes), or None.
    """
    from tvm import te, tirx

    if not winograd_applies(n):
        return None
    g = ConvGeometry.of(n)
    lanes = n.target.vector_lanes
    pl = plan_winograd(g, m, lanes)
    A, B, _ = winograd_matrices(m)
    a, cb = pl.alpha, pl.cb
    tiles = pl.nth * pl.ntw

    gemm_flops = 2 * a * a * pl.pp * pl.cp * pl.kp
    u_bytes = 4 * a * a * pl.cp * pl.kp
    if u_bytes > CACHED_BYTES and u_bytes / n.target.memory_bandwidth > gemm_flops / (
            EFFICIENCY[m] * n.target.peak_flops):
        return None  # few tiles (small images, many channels): streaming U costs more than the GEMMs
    u = transform_weight(n.inputs[1].data, m)
    u = np.pad(u, ((0, 0), (0, 0), (0, pl.cp - g.c), (0, pl.kp - g.m)))
    u = np.ascontiguousarray(u.reshape(a, a, pl.cp, pl.kp // pl.co_t, pl.co_t).transpose(0, 1, 3, 2, 4))
    x, read_x = n.reader(0, "x")
    u_ph = n.constant_placeholder(u, "u")

    def pad_pack(b, c, y, xx, v):
        ch = c * cb + v
        inside = [y >= g.pt, y < g.pt + g.h, xx >= g.pl, xx < g.pl + g.w]
        if g.c % cb:  # a channel tail: clamp the read (a blocked input has none: its index stays c, v)
            inside.append(ch < g.c)
            ch = tirx.min(ch, g.c - 1)
        return tirx.if_then_else(tirx.all(*inside), read_x(b, ch, y - g.pt, xx - g.pl), tirx.const(0, "float32"))

    d = te.compute((g.n, pl.cp // cb, pl.nth * m + 2, pl.ntw * m + 2, cb), pad_pack, name="data_pack")

    def tile_origin(p):  # padding tiles (p >= P) repeat the last tile; their results are never read
        p = tirx.min(p, pl.p - 1)
        return p // tiles, (p % tiles) // pl.ntw * m, p % pl.ntw * m

    def t1_value(i, nu, c, p, v):  # T1 = d B (rows of the tile times B's columns)
        b, y0, x0 = tile_origin(p)
        return _select(nu, [_lincomb(B[:, j], [d[b, c, y0 + i, x0 + k, v] for k in range(a)]) for j in range(a)])

    t1 = te.compute((a, a, pl.cp // cb, pl.pp, cb), t1_value, name="t1")
    vt = te.compute((a, a, pl.cp // cb, pl.pp, cb), lambda eps, nu, c, p, v: _select(
        eps, [_lincomb(B[:, i], [t1[k, nu, c, p, v] for k in range(a)]) for i in range(a)]), name="v")
    ci = te.reduce_axis((0, pl.cp), name="ci")
    mm = te.compute((a, a, pl.pp, pl.kp), lambda e, nu, p, co: te.sum(
        vt[e, nu, ci // cb, p, ci % cb] * u_ph[e, nu, co // pl.co_t, ci, co % pl.co_t], axis=ci), name="gemm")
    # inverse: S1 = M A (per tile row), Y = A^T S1
    s1 = te.compute((a, m, pl.pp, pl.kp), lambda i, j, p, co: _select(
        j, [_lincomb(A[:, jj], [mm[i, k, p, co] for k in range(a)]) for jj in range(m)]), name="s1")

    def y_value(b, kb, y, xx, v):
        p = b * tiles + (y // m) * pl.ntw + xx // m
        return _select(y % m, [_lincomb(A[:, i], [s1[k, xx % m, p, kb * lanes + v] for k in range(a)])
                               for i in range(m)])

    epilogue = ConvEpilogue.of(n, read_blocks=True)
    out_block = lanes if n.out_block == lanes else 0  # the inverse transform writes NCHW{lanes}c already
    # tiles that cover the output exactly: the inverse transform writes it (+bias), no unpack pass
    inverse_writes_out = bool(out_block) and (pl.nth * m, pl.ntw * m) == (g.oh, g.ow)
    if inverse_writes_out:
        out = te.compute((g.n, g.m // lanes, g.oh, g.ow, lanes), lambda b, kb, y, xx, v: epilogue(
            y_value(b, kb, y, xx, v), b, kb * lanes + v, y, xx), name="inverse")
    else:
        yt = te.compute((g.n, pl.kp // lanes, pl.nth * m, pl.ntw * m, lanes), y_value, name="inverse")
        if out_block:
            out = te.compute((g.n, g.m // lanes, g.oh, g.ow, lanes), lambda b, kb, y, xx, v: epilogue(
                yt[b, kb, y, xx, v], b, kb * lanes + v, y, xx), name="unpack")
        else:
            out = te.compute((g.n, g.m, g.oh, g.ow), lambda b, k, y, xx: epilogue(
                yt[b, k // lanes, y, xx, k % lanes], b, k, y, xx), name="unpack")

    def schedule(sch):
        blk = sch.get_sblock
        loops = sch.get_loops(blk("data_pack"))
        sch.parallel(sch.fuse(*loops[:3]))
        sch.vectorize(loops[-1])
        # inverse transform per output tile; S1 computed for that tile only
        b, kb, y, xx, v = sch.get_loops(blk("inverse"))
        if pl.row_block:  # blocks of tile rows: parallel, and everything else is computed per block
            yb, y = sch.split(y, [None, pl.row_block * m])
            sch.reorder(b, yb, kb)
            outer = sch.fuse(b, yb)
        yo, yi = sch.split(y, [None, m])
        xo, xi = sch.split(xx, [None, m])
        sch.reorder(kb, yo, xo, yi, xi, v)
        if not pl.row_block:
            outer = sch.fuse(b, kb, yo)
        sch.parallel(outer)
        sch.compute_at(blk("s1"), xo)
        sch.unroll(yi)
        sch.unroll(xi)
        sch.vectorize(v)
        ls = sch.get_loops(blk("s1"))
        sch.unroll(ls[-4])
        sch.unroll(ls[-3])
        sch.vectorize(ls[-1])
        if pl.row_block:
            sch.compute_at(blk("gemm"), outer)
            sch.compute_at(blk("v"), outer)
        # a*a GEMMs, register tile p_t x co_t
        gb = blk("gemm")
        acc = sch.cache_write(gb, 0, "local")
        e, nu, p, co, k = sch.get_loops(gb)[-5:]
        po, pi = sch.split(p, [None, pl.p_t])
        coo, coi = sch.split(co, [None, pl.co_t])
        ko, ki = sch.split(k, [None, cb])
        sch.reorder(e, nu, coo, po, ko, ki, pi, coi)
        sch.reverse_compute_at(acc, po)
        # ki stays a loop: unrolled, LLVM hoists all cb*p_t broadcasts above the FMAs and spills
        # (52 spill moves per 16 steps of the 7x32 tile; none as a loop, which LLVM unrolls by 2)
        sch.unroll(pi)
        sch.vectorize(coi)
        if not pl.row_block:
            sch.parallel(sch.fuse(e, nu, coo))
        sch.decompose_reduction(gb, ko)
        sch.vectorize(sch.get_loops(acc)[-1])
        # input transform: per (channel block, tile) and column nu of the tile, T1[:, nu] then
        # V[:, nu], vectorized over the block: 2a vectors live (all of T1 and V, 2a*a, spill)
        # under the block loop compute_at made loops only for the non-unit extents: no channel
        # loop when there is one channel block
        eps, nu, *c, p, v = sch.get_loops(blk("v"))[1 if pl.row_block else 0:]
        sch.reorder(*c, p, nu, eps, v)
        if not pl.row_block:
            sch.parallel(sch.fuse(*c, p))
        sch.compute_at(blk("t1"), nu)
        for name in ("t1", "v"):
            ls = sch.get_loops(blk(name))
            sch.unroll(ls[-2])
            sch.vectorize(ls[-1])
        sch.unroll(nu)
        if inverse_writes_out:
            return
        unpack = sch.get_loops(blk("unpack"))
        if out_block:
            sch.parallel(sch.fuse(*unpack[:3]))
            sch.vectorize(unpack[-1])
        else:  # an NCHW row reads one lane of each pixel's channel vector: the block's `lanes`
            b, k, y, xx = unpack  # channels in a row, so that they read those cache lines from L1
            kb, kv = sch.split(k, [None, lanes])
            sch.reorder(b, kb, y, kv, xx)
            sch.parallel(sch.fuse(b, kb, y))
            vectorize_row(sch, xx, lanes)

    kernel = make_kernel([x, u_ph] + epilogue.inputs, [out], schedule, [0, u] + epilogue.args,
                         f"conv2d winograd F({m}x{m},3x3), {pl.p} tiles, GEMM tile {pl.p_t}x{pl.co_t}"
                         + (f", blocks of {pl.row_block} tile rows" if pl.row_block else ""))
    kernel.in_blocks, kernel.out_block = conv_in_blocks(n), out_block
    kernel.extra["flops"] = pl.flops(epilogue.flops(g))
    # the transformed weights U (a*a/9 times the weights) are what this kernel streams
    kernel.extra["bytes"] = u.nbytes + sum(i.type.nbytes for i in n.inputs[:1]) + n.outputs[0].nbytes
    return kernel


@rule("Conv", name="conv2d-winograd-f2", family="winograd", efficiency=EFFICIENCY[2])
def conv2d_winograd_f2(n: LowerNode) -> Kernel | None:
    """float32 3x3 stride-1 Conv (constant weight) as Winograd F(2x2,3x3)."""
    return conv2d_winograd(n, 2)


@rule("Conv", name="conv2d-winograd-f4", family="winograd", efficiency=EFFICIENCY[4])
def conv2d_winograd_f4(n: LowerNode) -> Kernel | None:
    """float32 3x3 stride-1 Conv (constant weight) as Winograd F(4x4,3x3)."""
    return conv2d_winograd(n, 4)
