"""Lower one int8 conv2d (or dense) layer to a VTA instruction stream and DRAM image.

Tiles are (image, output-channel block, band of output rows); each tile's input channels are
loaded in one or more chunks of channel blocks (input-channel tiling, when the blocks of a band or
their weights overflow the buffers), accumulating in the tile's acc rows. A load step is one
(tile, chunk). With two virtual threads (TVM's latency hiding) each buffer is split in halves: inp
halves alternate by step and acc halves by tile, so step s+1 loads while step s computes and tile
t-1 stores. Weight halves alternate by step when a tile has several chunks; with one chunk they
alternate by run of tiles sharing an output block, so each block's weights load once, not once
per half. With one thread every step waits for the previous one. Per step:
  load:    LOAD INP per input-channel block of the chunk (conv halo as LOAD padding), LOAD WGT
           unless the half still holds this (output block, chunk)'s weights
  compute: [GEMM reset on the first chunk], GEMM over the chunk's (channel block, kh, kw) taps;
           after the last chunk [LOAD ACC bias], ALU ADD bias (rounding term folded in), SHR,
           MIN 127, MAX lo
  store:   STORE the band, after the last chunk
Micro-op kernels for every (inp, wgt, acc) half combination in use are loaded once per layer.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ...errors import UnsupportedError
from ...runtime.vta import (DEFAULT_CONFIG, Alu, AluOp, Finish, Gemm, Load, MemType, Store, Uop, VTAConfig,
                            encode_uops)
from ...runtime.vta.module import VTAKernel
from ...runtime.vta.sram import wrap32
from .layout import DramImage, ceil_div, pack_weights
from .reference import as_pair


@dataclass(frozen=True)
class Conv2dPlan:
    """Shapes, padded sizes and the tiling of one conv2d on VTA."""

    n: int
    c: int
    h: int
    w: int
    o: int
    kh: int
    kw: int
    stride: tuple[int, int]
    pad: tuple[int, int]
    oh: int
    ow: int
    cb: int  # input-channel blocks
    ob: int  # output-channel blocks
    tile_rows: int  # output rows per tile
    chunk_blocks: int  # input-channel blocks per load step (cb: no input-channel tiling)
    threads: int = 2  # virtual threads: buffer halves used alternately

    @property
    def wp(self) -> int:
        """Width of an input row in SRAM, halo included."""
        return self.w + 2 * self.pad[1]

    def rows_in(self, rows_out: int) -> int:
        """Input rows (halo included) that `rows_out` output rows read."""
        return (rows_out - 1) * self.stride[0] + self.kh

    @property
    def cb_stride(self) -> int:
        """SRAM elements reserved per input-channel block in an inp half."""
        return self.rows_in(self.tile_rows) * self.wp

    @property
    def chunks(self) -> int:
        """Load steps per tile (input-channel tiling when > 1)."""
        return ceil_div(self.cb, self.chunk_blocks)

    def tiles(self):
        """(image, output block, first output row, rows) in execution order; weights change rarely."""
        return [(n, ob, r, min(self.tile_rows, self.oh - r)) for n in range(self.n) for ob in range(self.ob)
                for r in range(0, self.oh, self.tile_rows)]


def _halves(config: VTAConfig, threads: int) -> dict[str, int]:
    # the last acc row holds the bias, so the acc parts get one row less
    return {"inp": config.depth("inp") // threads, "wgt": config.depth("wgt") // threads,
            "acc": (config.depth("acc") - 1) // threads, "bias": config.depth("acc") - 1}


def plan_conv2d(x_shape, w_shape, stride=1, padding=0, config: VTAConfig = DEFAULT_CONFIG,
                max_tile_rows: int | None = None, max_chunk_blocks: int | None = None,
                threads: int = 2) -> Conv2dPlan:
    """Choose the tiling of a conv2d so every load step's inp/wgt and every tile's acc fit their
    buffer part: the fewest input-channel chunks for which a band of output rows fits, then the
    largest band.

    Args:
        x_shape: (N, C, H, W).
        w_shape: (O, C, kh, kw).
        stride, padding: int or pair (padding is symmetric, at most 15: LOAD's pad fields).
        max_tile_rows: cap on output rows per tile (tests use it to force row tiling).
        max_chunk_blocks: cap on input-channel blocks per load step (forces input-channel tiling).
        threads: virtual threads, 1 or 2.
    Returns:
        The plan.
    Raises:
        UnsupportedError when even one output row of one channel block does not fit (column
        tiling is not implemented), or the layer's parameters are out of VTA's range.
    """
    n, c, h, w = x_shape
    o, c2, kh, kw = w_shape
    (sh, sw), (ph, pw) = as_pair(stride), as_pair(padding)
    if c != c2:
        raise UnsupportedError(f"VTA conv2d: input has {c} channels, weight expects {c2}")
    if not (0 <= ph <= 15 and 0 <= pw <= 15) or min(sh, sw) < 1:
        raise UnsupportedError(f"VTA conv2d: padding {(ph, pw)} must be 0..15 and stride {(sh, sw)} >= 1")
    if threads not in (1, 2):
        raise UnsupportedError(f"VTA conv2d: {threads} virtual threads; 1 or 2 are supported")
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if oh < 1 or ow < 1:
        raise UnsupportedError(f"VTA conv2d: empty output for input {x_shape}, kernel {(kh, kw)}")
    part = _halves(config, threads)
    cb, ob = ceil_div(c, config.block_in), ceil_div(o, config.block_out)
    most = min(cb, part["wgt"] // (kh * kw), max_chunk_blocks or cb)
    if most < 1:
        raise UnsupportedError(f"VTA conv2d: a {kh}x{kw} kernel needs {kh * kw} weight tiles per channel block, "
                               f"more than the {part['wgt']} of a weight buffer part")
    plan = Conv2dPlan(n, c, h, w, o, kh, kw, (sh, sw), (ph, pw), oh, ow, cb, ob, 1, most, threads)
    for chunks in range(ceil_div(cb, most), cb + 1):
        blocks = ceil_div(cb, chunks)
        fits = [r for r in range(1, min(oh, max_tile_rows or oh) + 1)
                if blocks * plan.rows_in(r) * plan.wp <= part["inp"] and r * ow <= part["acc"]]
        if fits:
            return replace(plan, tile_rows=fits[-1], chunk_blocks=blocks)
    raise UnsupportedError(f"VTA conv2d: one output row of {x_shape} x {w_shape} does not fit the inp "
                           f"({part['inp']}) / acc ({part['acc']}) buffer parts even for one channel block; "
                           f"column tiling is not implemented")


@dataclass
class VTALayer:
    """A lowered layer: its plan and the VTAKernel (instructions + DRAM image) that runs it."""

    plan: Conv2dPlan
    kernel: VTAKernel

    def run(self, x: np.ndarray, simulator=None):
        """Run on the simulator: int8 NCHW input -> (int8 NCHW output, SimStats); see VTAKernel.run."""
        return self.kernel.run(x, simulator)


def lower_conv2d(x_shape, w: np.ndarray, bias, shift: int, relu: bool = False, *, stride=1, padding=0,
                 out_min: int = -128, config: VTAConfig = DEFAULT_CONFIG, max_tile_rows: int | None = None,
                 max_chunk_blocks: int | None = None, threads: int = 2) -> VTALayer:
    """Lower an int8 conv2d + bias + requantize (+ ReLU) to VTA; semantics of conv2d_int8_reference.

    Args:
        x_shape: (N, C, H, W) of the int8 input.
        w: int8 OIHW weight.
        bias: int32 (O,) or None.
        shift: power-of-two requantize shift, 0..15.
        relu: clip at 0 instead of out_min.
        stride, padding: int or pair.
        out_min: lower clip bound without ReLU.
        config: VTA hardware configuration.
        max_tile_rows, max_chunk_blocks, threads: see plan_conv2d.
    Returns:
        A VTALayer; `layer.run(x)` gives the output and statistics.
    """
    if not 0 <= shift <= 15:
        raise UnsupportedError(f"VTA conv2d: requantize shift {shift} must be 0..15")
    p = plan_conv2d(x_shape, w.shape, stride, padding, config, max_tile_rows, max_chunk_blocks, threads)
    bo, bi = config.block_out, config.block_in
    bias = np.zeros(p.o, np.int64) if bias is None else np.asarray(bias, np.int64)
    # (x + b) + 2^(s-1) == x + (b + 2^(s-1)) modulo 2^32: one ALU pass fewer
    bias_rows = np.zeros((p.ob * bo,), np.int32)
    bias_rows[:p.o] = wrap32(bias + ((1 << (shift - 1)) if shift else 0))
    kernels = _UopKernels(p, config)
    uops = encode_uops(kernels.uops, config)
    wpk = pack_weights(w.astype(np.int8), bo, bi)
    image = DramImage()
    for name, nbytes in (("inp", p.n * p.cb * p.h * p.w * bi), ("wgt", wpk.nbytes), ("bias", bias_rows.nbytes),
                         ("uop", uops.nbytes), ("out", p.n * p.ob * p.oh * p.ow * bo)):
        image.add(name, nbytes)
    dram = image.allocate()
    for name, data in (("wgt", wpk), ("bias", bias_rows), ("uop", uops)):
        image.view(dram, name)[:] = data.view(np.uint8).ravel()
    eb = config.elem_bytes
    base = {"inp": image.elem("inp", eb["inp"]), "wgt": image.elem("wgt", eb["wgt"]),
            "bias": image.elem("bias", eb["acc"]), "uop": image.elem("uop", eb["uop"]),
            "out": image.elem("out", eb["out"])}
    program = [Load(memory_type=MemType.UOP, dram_base=base["uop"], x_size=uops.size, x_stride=uops.size)]
    program += _emit_steps(p, config, base, kernels, 0 if relu else out_min, shift)
    program += [Gemm(pop_next=True), Finish()]  # FINISH after the last store
    return VTALayer(p, VTAKernel(program, image, dram, (p.n, p.c, p.h, p.w), (p.n, p.o, p.oh, p.ow), config))


def _steps(p: Conv2dPlan) -> list[tuple[int, int, tuple[int, int, int]]]:
    """Load steps in execution order: (tile index, input-channel chunk, (inp, wgt, acc) buffer part).

    A weight part is reused by the step `threads` later when there are several chunks, else by the
    run of tiles (one output block) `threads` runs later; either way the load that overwrites it
    pops the compute->load token of a step at least `threads` earlier, which (compute being in
    order) follows every GEMM that read the old weights.
    """
    d, steps, run, prev_ob = p.threads, [], -1, None
    for t, (_, ob, _, _) in enumerate(p.tiles()):
        run += ob != prev_ob
        prev_ob = ob
        for k in range(p.chunks):
            s = len(steps)
            steps.append((t, k, (s % d, (s if p.chunks > 1 else run) % d, t % d)))
    return steps


class _UopKernels:
    """The layer's micro-ops: per acc part [acc row (reset/ALU imm), acc row + bias source], then per
    (inp, wgt, acc) part combination in use the taps of a full chunk, channel-block major (a shorter
    last chunk uses a prefix)."""

    def __init__(self, p: Conv2dPlan, config: VTAConfig):
        part = _halves(config, p.threads)
        self.uops = []
        for a in range(p.threads):
            self.uops += [Uop(dst_idx=a * part["acc"]), Uop(dst_idx=a * part["acc"], src_idx=part["bias"])]
        self.taps = {}  # (inp, wgt, acc) part -> first uop
        for _, _, parts in _steps(p):
            if parts in self.taps:
                continue
            self.taps[parts] = len(self.uops)
            inp, wgt, acc = (i * part[kind] for i, kind in zip(parts, ("inp", "wgt", "acc")))
            self.uops += [Uop(dst_idx=acc, src_idx=inp + cb * p.cb_stride + i * p.wp + j,
                              wgt_idx=wgt + (cb * p.kh + i) * p.kw + j)
                          for cb in range(p.chunk_blocks) for i in range(p.kh) for j in range(p.kw)]

    @staticmethod
    def acc_row(acc_part: int) -> int:
        return 2 * acc_part

    @staticmethod
    def bias_row(acc_part: int) -> int:
        return 2 * acc_part + 1


def _emit_steps(p: Conv2dPlan, config: VTAConfig, base: dict, kernels: _UopKernels, lo: int, shift: int) -> list:
    """The load/compute/store instructions of every step with their dependency tokens.

    Tokens: a step's loads push load->compute; its tap GEMM pops it and, when step s+d reuses the
    inp/wgt part (d = threads), pushes compute->load, which that step's first load pops. A tile's
    epilogue pushes compute->store; its store pops it and, when tile t+d reuses the acc part (or
    it is the last tile, for the final GEMM before FINISH), pushes store->compute, which the reset
    GEMM of tile t+d pops.
    """
    part, d = _halves(config, p.threads), p.threads
    taps_per_block = p.kh * p.kw
    tiles, steps = p.tiles(), _steps(p)
    wgt_held, bias_held, program = [None] * d, None, []
    for s, (t, k, parts) in enumerate(steps):
        n, ob, r, rows = tiles[t]
        ip, wp, ap = parts
        blocks = range(k * p.chunk_blocks, min(p.cb, (k + 1) * p.chunk_blocks))
        top = r * p.stride[0] - p.pad[0]
        need = p.rows_in(rows)
        lo_row, hi_row = max(top, 0), min(top + need, p.h)
        loads = [Load(memory_type=MemType.INP, sram_base=ip * part["inp"] + (cb - blocks[0]) * p.cb_stride,
                      dram_base=base["inp"] + ((n * p.cb + cb) * p.h + lo_row) * p.w,
                      y_size=hi_row - lo_row, x_size=p.w, x_stride=p.w, y_pad_0=lo_row - top,
                      y_pad_1=top + need - hi_row, x_pad_0=p.pad[1], x_pad_1=p.pad[1]) for cb in blocks]
        if wgt_held[wp] != (ob, k):  # the previous user of this part had other weights
            ntaps = len(blocks) * taps_per_block
            loads.append(Load(memory_type=MemType.WGT, sram_base=wp * part["wgt"], x_size=ntaps, x_stride=ntaps,
                              dram_base=base["wgt"] + (ob * p.cb + blocks[0]) * taps_per_block))
            wgt_held[wp] = (ob, k)
        loads[0] = replace(loads[0], pop_next=s >= d)  # compute of step s-d released the part
        loads[-1] = replace(loads[-1], push_next=True)
        loop = dict(iter_out=rows, iter_in=p.ow, dst_factor_out=p.ow, dst_factor_in=1)
        compute = []
        if k == 0:  # the acc part is free once the store of tile t-d has read it
            acc = kernels.acc_row(ap)
            compute.append(Gemm(reset_reg=True, uop_bgn=acc, uop_end=acc + 1, pop_next=t >= d, **loop))
        first = kernels.taps[parts]
        compute.append(Gemm(uop_bgn=first, uop_end=first + len(blocks) * taps_per_block, pop_prev=True,
                            push_prev=s + d < len(steps), src_factor_out=p.stride[0] * p.wp,
                            src_factor_in=p.stride[1], **loop))
        program += loads + compute
        if k == p.chunks - 1:
            if bias_held != ob:
                program.append(Load(memory_type=MemType.ACC, sram_base=part["bias"], dram_base=base["bias"] + ob,
                                     x_size=1, x_stride=1))
                bias_held = ob
            program += _epilogue(kernels, ap, loop, lo, shift)
            program.append(Store(memory_type=MemType.OUT, sram_base=ap * part["acc"], pop_prev=True,
                                 push_prev=t + d < len(tiles) or t == len(tiles) - 1,
                                 dram_base=base["out"] + ((n * p.ob + ob) * p.oh + r) * p.ow,
                                 y_size=rows, x_size=p.ow, x_stride=p.ow))
    return program


def _epilogue(kernels: _UopKernels, acc_part: int, loop: dict, lo: int, shift: int) -> list:
    """ALU: add the bias row (src factors 0: every pixel reads it), shift, clip; the last pushes to store."""
    acc, bias = kernels.acc_row(acc_part), kernels.bias_row(acc_part)
    ops = [(AluOp.ADD, False, 0, bias)]
    ops += [(AluOp.SHR, True, shift, acc)] if shift else []
    ops += [(AluOp.MIN, True, 127, acc), (AluOp.MAX, True, lo, acc)]
    alu = [Alu(alu_opcode=op, use_imm=imm, imm=val, uop_bgn=k, uop_end=k + 1, **loop) for op, imm, val, k in ops]
    alu[-1] = replace(alu[-1], push_next=True)
    return alu


def lower_dense(x_shape, w: np.ndarray, bias, shift: int, relu: bool = False, **kwargs) -> VTALayer:
    """Lower int8 dense (x: (N, C), w: (O, C)) as a 1x1 conv on a 1x1 image; run with x[:, :, None, None].

    Args:
        x_shape: (N, C).
        w: int8 (O, C).
        bias, shift, relu, kwargs: as lower_conv2d.
    Returns:
        A VTALayer whose input/output are (N, C, 1, 1) / (N, O, 1, 1).
    """
    return lower_conv2d((*x_shape, 1, 1), w[:, :, None, None], bias, shift, relu, **kwargs)
