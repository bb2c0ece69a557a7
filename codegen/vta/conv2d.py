"""Lower one int8 conv2d (or dense) layer to a VTA instruction stream and DRAM image.

Tiles are (image, output-channel block, band of output rows). Buffers are split in two
halves used by alternate tiles (TVM's two virtual threads), so tile t+1 loads while tile t
computes and tile t-1 stores. Per tile:
  load:    LOAD INP per input-channel block (conv halo as LOAD padding), LOAD WGT if the half
           holds another output block's weights
  compute: [LOAD ACC bias], GEMM reset, GEMM over (channel block, kh, kw) micro-ops,
           ALU ADD bias (rounding term folded in), SHR, MIN 127, MAX lo
  store:   STORE the band
Micro-op kernels for both halves are loaded once per layer.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ...errors import UnsupportedError
from ...runtime.vta import (DEFAULT_CONFIG, Alu, AluOp, Finish, Gemm, Load, MemType, SimStats, Store, Uop,
                            VTAConfig, VTASimulator, encode_uops)
from ...runtime.vta.sram import wrap32
from .layout import DramImage, ceil_div, pack_activations, pack_weights, unpack_activations
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

    def tiles(self):
        """(image, output block, first output row, rows) in execution order; weights change rarely."""
        return [(n, ob, r, min(self.tile_rows, self.oh - r)) for n in range(self.n) for ob in range(self.ob)
                for r in range(0, self.oh, self.tile_rows)]


def _halves(config: VTAConfig) -> dict[str, int]:
    # the last acc row holds the bias, so the acc halves get one row less
    return {"inp": config.depth("inp") // 2, "wgt": config.depth("wgt") // 2,
            "acc": (config.depth("acc") - 1) // 2, "bias": config.depth("acc") - 1}


def plan_conv2d(x_shape, w_shape, stride=1, padding=0, config: VTAConfig = DEFAULT_CONFIG,
                max_tile_rows: int | None = None) -> Conv2dPlan:
    """Choose the tiling of a conv2d so every tile's inp/wgt/acc fit half a buffer.

    Args:
        x_shape: (N, C, H, W).
        w_shape: (O, C, kh, kw).
        stride, padding: int or pair (padding is symmetric, at most 15: LOAD's pad fields).
        max_tile_rows: cap on output rows per tile (tests use it to force tiling).
    Returns:
        The plan (largest band of output rows that fits).
    Raises:
        UnsupportedError when even one output row does not fit, or the weights of one output
        block exceed half the weight buffer (input-channel tiling is not implemented).
    """
    n, c, h, w = x_shape
    o, c2, kh, kw = w_shape
    (sh, sw), (ph, pw) = as_pair(stride), as_pair(padding)
    if c != c2:
        raise UnsupportedError(f"VTA conv2d: input has {c} channels, weight expects {c2}")
    if not (0 <= ph <= 15 and 0 <= pw <= 15) or min(sh, sw) < 1:
        raise UnsupportedError(f"VTA conv2d: padding {(ph, pw)} must be 0..15 and stride {(sh, sw)} >= 1")
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if oh < 1 or ow < 1:
        raise UnsupportedError(f"VTA conv2d: empty output for input {x_shape}, kernel {(kh, kw)}")
    half = _halves(config)
    cb, ob = ceil_div(c, config.block_in), ceil_div(o, config.block_out)
    if cb * kh * kw > half["wgt"]:
        raise UnsupportedError(f"VTA conv2d: {cb * kh * kw} weight tiles per output block exceed half the "
                               f"weight buffer ({half['wgt']}); input-channel tiling is not implemented")
    plan = Conv2dPlan(n, c, h, w, o, kh, kw, (sh, sw), (ph, pw), oh, ow, cb, ob, 1)
    best = 0
    for rows in range(1, min(oh, max_tile_rows or oh) + 1):
        if cb * plan.rows_in(rows) * plan.wp <= half["inp"] and rows * ow <= half["acc"]:
            best = rows
    if best == 0:
        raise UnsupportedError(f"VTA conv2d: one output row of {x_shape} x {w_shape} does not fit half the "
                               f"inp ({half['inp']}) / acc ({half['acc']}) buffers; column tiling is not implemented")
    return replace(plan, tile_rows=best)


@dataclass
class VTALayer:
    """A lowered layer: its instruction stream and a DRAM image holding weights, bias and uops."""

    plan: Conv2dPlan
    program: list
    image: DramImage
    dram: np.ndarray
    config: VTAConfig

    def run(self, x: np.ndarray, simulator: VTASimulator | None = None) -> tuple[np.ndarray, SimStats]:
        """Run the layer on the simulator.

        Args:
            x: int8 NCHW input of the planned shape.
            simulator: reuse one (its SRAM state is irrelevant: every tile loads what it reads).
        Returns:
            (int8 NCHW output, the run's SimStats).
        """
        p = self.plan
        if x.shape != (p.n, p.c, p.h, p.w) or x.dtype != np.int8:
            raise UnsupportedError(f"VTA conv2d: expected int8 input {(p.n, p.c, p.h, p.w)}, got {x.dtype} {x.shape}")
        dram = self.dram.copy()
        self.image.view(dram, "inp")[:] = pack_activations(x, self.config.block_in).view(np.uint8).ravel()
        stats = (simulator or VTASimulator(self.config)).run(self.program, dram)
        out = self.image.view(dram, "out").view(np.int8).reshape(p.n, p.ob, p.oh, p.ow, self.config.block_out)
        return unpack_activations(out, p.o), stats


def _uop_kernels(p: Conv2dPlan, config: VTAConfig) -> list[Uop]:
    """Per half: [acc row (reset/ALU imm), acc row + bias source, conv taps...]."""
    half = _halves(config)
    uops = []
    for h in range(2):
        acc, inp, wgt = h * half["acc"], h * half["inp"], h * half["wgt"]
        uops += [Uop(dst_idx=acc), Uop(dst_idx=acc, src_idx=half["bias"])]
        uops += [Uop(dst_idx=acc, src_idx=inp + cb * p.cb_stride + i * p.wp + j, wgt_idx=wgt + (cb * p.kh + i) * p.kw + j)
                 for cb in range(p.cb) for i in range(p.kh) for j in range(p.kw)]
    return uops


def lower_conv2d(x_shape, w: np.ndarray, bias, shift: int, relu: bool = False, *, stride=1, padding=0,
                 out_min: int = -128, config: VTAConfig = DEFAULT_CONFIG, max_tile_rows: int | None = None) -> VTALayer:
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
        max_tile_rows: cap on output rows per tile.
    Returns:
        A VTALayer; `layer.run(x)` gives the output and statistics.
    """
    if not 0 <= shift <= 15:
        raise UnsupportedError(f"VTA conv2d: requantize shift {shift} must be 0..15")
    p = plan_conv2d(x_shape, w.shape, stride, padding, config, max_tile_rows)
    bo, bi = config.block_out, config.block_in
    bias = np.zeros(p.o, np.int64) if bias is None else np.asarray(bias, np.int64)
    # (x + b) + 2^(s-1) == x + (b + 2^(s-1)) modulo 2^32: one ALU pass fewer
    bias_rows = np.zeros((p.ob * bo,), np.int32)
    bias_rows[:p.o] = wrap32(bias + ((1 << (shift - 1)) if shift else 0))
    uops = encode_uops(_uop_kernels(p, config), config)
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
    program += _emit_tiles(p, config, base, uops.size // 2, 0 if relu else out_min, shift)
    return VTALayer(p, program + [Gemm(pop_next=True), Finish()], image, dram, config)


def _emit_tiles(p: Conv2dPlan, config: VTAConfig, base: dict, uops_per_half: int, lo: int, shift: int) -> list:
    """The per-tile load/compute/store instructions with their dependency tokens."""
    half = _halves(config)
    taps = p.cb * p.kh * p.kw
    tiles = p.tiles()
    wgt_held, bias_held, program = [None, None], None, []
    for t, (n, ob, r, rows) in enumerate(tiles):
        h = t % 2
        reuses, reused_later = t >= 2, t + 2 < len(tiles)  # does tile t-2 / t+2 share half h?
        top = r * p.stride[0] - p.pad[0]
        need = p.rows_in(rows)
        lo_row, hi_row = max(top, 0), min(top + need, p.h)
        loads = [Load(memory_type=MemType.INP, sram_base=h * half["inp"] + cb * p.cb_stride,
                      dram_base=base["inp"] + ((n * p.cb + cb) * p.h + lo_row) * p.w,
                      y_size=hi_row - lo_row, x_size=p.w, x_stride=p.w, y_pad_0=lo_row - top,
                      y_pad_1=top + need - hi_row, x_pad_0=p.pad[1], x_pad_1=p.pad[1]) for cb in range(p.cb)]
        if wgt_held[h] != ob:  # the previous user of this half had other weights
            loads.append(Load(memory_type=MemType.WGT, sram_base=h * half["wgt"], dram_base=base["wgt"] + ob * taps,
                              x_size=taps, x_stride=taps))
            wgt_held[h] = ob
        # wait until compute of tile t-2 released the half; tell compute the tile is in
        loads[0] = replace(loads[0], pop_next=reuses)
        loads[-1] = replace(loads[-1], push_next=True)
        u = h * uops_per_half
        loop = dict(iter_out=rows, iter_in=p.ow, dst_factor_out=p.ow, dst_factor_in=1)
        compute = []
        if bias_held != ob:
            compute.append(Load(memory_type=MemType.ACC, sram_base=half["bias"], dram_base=base["bias"] + ob,
                                x_size=1, x_stride=1))
            bias_held = ob
        epilogue = [(AluOp.ADD, False, 0, u + 1)]  # bias row: src factors 0, so every pixel reads it
        epilogue += [(AluOp.SHR, True, shift, u)] if shift else []
        epilogue += [(AluOp.MIN, True, 127, u), (AluOp.MAX, True, lo, u)]
        compute += [
            # the acc half is free once the store of tile t-2 has read it
            Gemm(reset_reg=True, uop_bgn=u, uop_end=u + 1, pop_next=reuses, **loop),
            # inp/wgt are in; after this GEMM the load module may refill the half
            Gemm(uop_bgn=u + 2, uop_end=u + 2 + taps, src_factor_out=p.stride[0] * p.wp, src_factor_in=p.stride[1],
                 pop_prev=True, push_prev=reused_later, **loop),
        ] + [Alu(alu_opcode=op, use_imm=imm, imm=val, uop_bgn=k, uop_end=k + 1, **loop) for op, imm, val, k in epilogue]
        compute[-1] = replace(compute[-1], push_next=True)
        store = Store(memory_type=MemType.OUT, sram_base=h * half["acc"], pop_prev=True,
                      push_prev=reused_later or t == len(tiles) - 1,
                      dram_base=base["out"] + ((n * p.ob + ob) * p.oh + r) * p.ow, y_size=rows, x_size=p.ow, x_stride=p.ow)
        program += loads + compute + [store]
    return program


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
