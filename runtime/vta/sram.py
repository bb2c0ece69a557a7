"""The functional core of the VTA simulator: on-chip buffers and what each instruction does to them.

This is the executable definition of VTA_SPEC.md section 4. Timing and the token protocol
live in simulator.py; here every instruction runs to completion, bounds-checked.
"""
from __future__ import annotations

import numpy as np

from .errors import VTASimError
from .isa import (DEFAULT_CONFIG, MEM_BUFFER, MEM_DRAM_ELEM, Alu, AluOp, Gemm, Load, MemType, Store,
                  VTAConfig, uop_fields)


def wrap32(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap of int64 values to int32 (the accumulator's overflow rule)."""
    return (np.asarray(x, np.int64) & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


def alu_apply(op: int, a: np.ndarray, b) -> np.ndarray:
    """One ALU op on int32 lanes with VTA's exact integer semantics.

    Args:
        op: AluOp value.
        a: destination lanes (int32 array).
        b: second operand, immediate (int) or lanes (int32 array).
    Returns:
        int32 result: MIN/MAX signed; ADD/MUL wrap at 32 bits; SHR arithmetic right by r >= 0,
        left by -r when r < 0 (shifts of 32 or more saturate to sign fill / zero).
    """
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    if op == AluOp.MIN:
        return wrap32(np.minimum(a, b))
    if op == AluOp.MAX:
        return wrap32(np.maximum(a, b))
    if op == AluOp.ADD:
        return wrap32(a + b)
    if op == AluOp.MUL:
        return wrap32(a * b)  # |a*b| < 2**62: exact in int64 before the wrap
    if op == AluOp.SHR:
        right = a >> np.clip(b, 0, 63)
        left = a << np.clip(-b, 0, 32)  # a << 32 still fits int64 and wraps to 0, as it should
        return wrap32(np.where(b >= 0, right, left))
    raise VTASimError(f"bad ALU opcode {op} (valid: {', '.join(f'{o.name}={o.value}' for o in AluOp)})")


class SRAM:
    """VTA's on-chip buffers and the functional effect of every instruction.

    Buffers: uop (uint32 words), inp (int8 [batch][block_in]), wgt (int8 [block_out][block_in]),
    acc (int32 [batch][block_out]); out is acc truncated to int8 row for row, so it is not
    stored separately (STORE truncates at the time it reads).
    """

    def __init__(self, config: VTAConfig = DEFAULT_CONFIG):
        c = self.config = config
        self.buffers = {
            "uop": np.zeros(c.depth("uop"), np.uint32),
            "inp": np.zeros((c.depth("inp"), c.batch, c.block_in), np.int8),
            "wgt": np.zeros((c.depth("wgt"), c.block_out, c.block_in), np.int8),
            "acc": np.zeros((c.depth("acc"), c.batch, c.block_out), np.int32),
        }

    # ---- memory instructions -------------------------------------------------------------
    def _dram_elements(self, where: str, insn, dram: np.ndarray, elem_bytes: int) -> np.ndarray:
        """Byte indices [y][x][byte] of the DRAM elements a LOAD/STORE touches, bounds-checked."""
        elem = insn.dram_base + np.arange(insn.y_size)[:, None] * insn.x_stride + np.arange(insn.x_size)[None, :]
        if elem.size == 0:  # y_size == 0: only padding rows
            return np.zeros((insn.y_size, insn.x_size, elem_bytes), np.int64)
        last = int(elem.max())
        if (last + 1) * elem_bytes > dram.size:
            raise VTASimError(f"{where}: DRAM element {last} (bytes [{last * elem_bytes}, "
                              f"{(last + 1) * elem_bytes})) is beyond the {dram.size}-byte DRAM image")
        return elem[..., None] * elem_bytes + np.arange(elem_bytes)

    def _check_sram(self, where: str, buf: str, base: int, count: int):
        depth = self.config.depth(buf)
        if base + count > depth:
            raise VTASimError(f"{where}: {buf} buffer index {base + count - 1} out of range "
                              f"(elements [{base}, {base + count}), depth {depth})")

    def load(self, where: str, insn: Load, dram: np.ndarray) -> int:
        """DRAM -> SRAM with zero padding. Returns the DRAM bytes read."""
        if insn.x_size == 0:
            return 0
        mt = MemType(insn.memory_type)
        buf, elem = MEM_BUFFER[mt], MEM_DRAM_ELEM[mt]
        rows = insn.y_pad_0 + insn.y_size + insn.y_pad_1
        cols = insn.x_pad_0 + insn.x_size + insn.x_pad_1
        self._check_sram(where, buf, insn.sram_base, rows * cols)
        eb = self.config.elem_bytes[elem]
        raw = dram[self._dram_elements(where, insn, dram, eb)]  # [y][x][bytes]
        target = self.buffers[buf]
        dtype = {"uop": "<u4", "inp": np.int8, "wgt": np.int8, "acc": "<i4", "out": np.int8}[elem]
        data = np.ascontiguousarray(raw).view(dtype).reshape((insn.y_size, insn.x_size) + target.shape[1:])
        block = np.zeros((rows, cols) + target.shape[1:], target.dtype)  # pads are zeros
        block[insn.y_pad_0:insn.y_pad_0 + insn.y_size, insn.x_pad_0:insn.x_pad_0 + insn.x_size] = data
        target[insn.sram_base:insn.sram_base + rows * cols] = block.reshape((rows * cols,) + target.shape[1:])
        return insn.x_size * insn.y_size * eb

    def store(self, where: str, insn: Store, dram: np.ndarray) -> int:
        """OUT (int8-truncated acc) -> DRAM. Returns the DRAM bytes written."""
        pads = {p: getattr(insn, p) for p in ("y_pad_0", "y_pad_1", "x_pad_0", "x_pad_1")}
        if any(pads.values()):
            raise VTASimError(f"{where}: STORE does not support padding "
                              f"({', '.join(f'{k}={v}' for k, v in pads.items() if v)})")
        if insn.x_size == 0:
            return 0
        count = insn.y_size * insn.x_size
        self._check_sram(where, "out", insn.sram_base, count)
        eb = self.config.elem_bytes["out"]
        idx = self._dram_elements(where, insn, dram, eb)
        # no saturation: the compiler clamps with MIN/MAX before storing
        rows = self.buffers["acc"][insn.sram_base:insn.sram_base + count].astype(np.int8)
        dram[idx] = rows.reshape(insn.y_size, insn.x_size, eb).view(np.uint8)
        return count * eb

    # ---- compute instructions ------------------------------------------------------------
    def _loop_indices(self, where: str, insn, with_wgt: bool):
        """Flattened (y, x, uop) index arrays of a GEMM/ALU loop, in execution order."""
        if insn.uop_end < insn.uop_bgn:
            raise VTASimError(f"{where}: uop_end {insn.uop_end} < uop_bgn {insn.uop_bgn}")
        self._check_sram(where, "uop", insn.uop_bgn, insn.uop_end - insn.uop_bgn)
        dst, src, wgt = uop_fields(self.buffers["uop"][insn.uop_bgn:insn.uop_end], self.config)
        y = np.arange(insn.iter_out)[:, None, None]
        x = np.arange(insn.iter_in)[None, :, None]
        out = [(dst + y * insn.dst_factor_out + x * insn.dst_factor_in).ravel(),
               (src + y * insn.src_factor_out + x * insn.src_factor_in).ravel()]
        if with_wgt:
            out.append((wgt + y * insn.wgt_factor_out + x * insn.wgt_factor_in).ravel())
        return out

    def _check_indices(self, where: str, insn, buf: str, idx: np.ndarray):
        depth = self.config.depth(buf)
        bad = np.nonzero(idx >= depth)[0]
        if bad.size:
            n_uop = insn.uop_end - insn.uop_bgn
            i = int(bad[0])
            y, rem = divmod(i, insn.iter_in * n_uop)
            x, k = divmod(rem, n_uop)
            raise VTASimError(f"{where}: {buf} buffer index {int(idx[i])} out of range (depth {depth}) "
                              f"at iteration y={y}, x={x}, uop {insn.uop_bgn + k}")

    def gemm(self, where: str, insn: Gemm) -> int:
        """Run a GEMM. Returns the micro-op iterations executed."""
        a, s, w = self._loop_indices(where, insn, with_wgt=True)
        if a.size == 0:
            return 0
        acc = self.buffers["acc"]
        self._check_indices(where, insn, "acc", a)
        if insn.reset_reg:
            acc[a] = 0
            return a.size
        self._check_indices(where, insn, "inp", s)
        self._check_indices(where, insn, "wgt", w)
        # |products| <= 16 * 128 * 128: exact in int64; accumulation is a sum, so order-free
        prod = np.einsum("nbk,nok->nbo", self.buffers["inp"][s].astype(np.int64),
                         self.buffers["wgt"][w].astype(np.int64))
        rows, inv = np.unique(a, return_inverse=True)
        delta = np.zeros((rows.size,) + acc.shape[1:], np.int64)
        np.add.at(delta, inv.ravel(), prod)
        acc[rows] = wrap32(acc[rows].astype(np.int64) + delta)
        return a.size

    def alu(self, where: str, insn: Alu) -> int:
        """Run an ALU instruction. Returns the micro-op iterations executed."""
        if insn.alu_opcode not in AluOp._value2member_map_:
            raise VTASimError(f"{where}: bad ALU opcode {insn.alu_opcode} "
                              f"(valid: {', '.join(f'{o.name}={o.value}' for o in AluOp)})")
        a, s = self._loop_indices(where, insn, with_wgt=False)
        if a.size == 0:
            return 0
        acc = self.buffers["acc"]
        self._check_indices(where, insn, "acc", a)
        if not insn.use_imm:
            self._check_indices(where, insn, "acc", s)
        if _alu_vectorisable(a, s, insn.use_imm):
            acc[a] = alu_apply(insn.alu_opcode, acc[a], insn.imm if insn.use_imm else acc[s])
        else:  # a later iteration reads or rewrites what an earlier one wrote: keep program order
            for ai, si in zip(a.tolist(), s.tolist()):
                acc[ai] = alu_apply(insn.alu_opcode, acc[ai], insn.imm if insn.use_imm else acc[si])
        return a.size


def _alu_vectorisable(a: np.ndarray, s: np.ndarray, use_imm: bool) -> bool:
    """True when running all iterations at once equals running them in order: no destination
    repeats, and no source is a destination written by an earlier iteration."""
    order = np.argsort(a, kind="stable")
    sorted_a = a[order]
    if np.any(sorted_a[1:] == sorted_a[:-1]):
        return False
    if use_imm:
        return True
    k = np.clip(np.searchsorted(sorted_a, s), 0, a.size - 1)
    writer = order[k]
    return not np.any((sorted_a[k] == s) & (writer < np.arange(a.size)))
