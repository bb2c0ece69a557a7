"""The u8 x s8 -> int32 dot product of the int8 kernels: packing, its TIR, and the SIMD instruction.

Both fast int8 kernels (QMatMul in int8.py, QConv in int8_conv.py) reduce over int32 "words":

    x word  = 4 consecutive reduction elements of x as u8 (x + 128 for int8 x), byte i = element i
    w words = the same 4 elements of int8 weights, one word per output channel (lane)
    acc[lane] += sum_i u8(x word)[i] * s8(w word[lane])[i]                   (`dot4`, wrapping int32)

LLVM does not form these instructions from plain TIR (it emits widening multiplies), and
s_tir's tensorize crashes in this TVM build, so each kernel is scheduled with the lane loop
blockized and `use_dot_instruction` then replaces that block's body with the instruction,
built from the block's own read/write regions:

    VPDPBUSD   (AVX-512 VNNI): one vpdpbusd per 16 lanes, 64 multiply-adds, exact.
    PMADDUBSW  (AVX2): vpmaddubsw (pairs summed to int16, saturating) + vpmaddwd by 1 + vpaddd
               per 8 lanes; exact only when no pair of products can leave int16, which
               `pairs_fit_int16` checks on the constant weights (7-bit weights always fit).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .kernel import Kernel
from .rules import make_kernel
from .schedule_tiles import round_up


@dataclass(frozen=True)
class DotInstruction:
    """How one register of `lanes` int32 accumulators takes a step of dot4.

    feature: the LLVM CPU feature it needs.
    accumulators: registers a register tile may use for accumulators (the rest hold weights,
        broadcasts and temporaries).
    needs_int16_pairs: exact only when `pairs_fit_int16` holds for the weights.
    """

    name: str
    feature: str
    lanes: int
    accumulators: int
    needs_int16_pairs: bool

    def emit(self, acc, x_word, w_words):
        """TIR of acc + dot4(broadcast x_word, w_words) over `lanes` int32 lanes."""
        from tvm import tirx

        n = self.lanes
        x_bytes = tirx.reinterpret(f"uint8x{4 * n}", tirx.Broadcast(x_word, n))
        w_bytes = tirx.reinterpret(f"int8x{4 * n}", w_words)
        if self.name == "vpdpbusd":
            return tirx.call_llvm_pure_intrin(f"int32x{n}", "llvm.x86.avx512.vpdpbusd.512", acc, x_bytes, w_bytes)
        pairs = tirx.call_llvm_pure_intrin(f"int16x{2 * n}", "llvm.x86.avx2.pmadd.ub.sw", x_bytes, w_bytes)
        quads = tirx.call_llvm_pure_intrin(f"int32x{n}", "llvm.x86.avx2.pmadd.wd", pairs,
                                           tirx.Broadcast(tirx.const(1, "int16"), 2 * n))
        return acc + quads


VPDPBUSD = DotInstruction("vpdpbusd", "avx512vnni", 16, 24, False)
PMADDUBSW = DotInstruction("vpmaddubsw", "avx2", 8, 10, True)
INSTRUCTIONS = (VPDPBUSD, PMADDUBSW)  # fastest first
MIN_ACCUMULATORS = 8  # independent accumulators that hide the instructions' latency (5 cycles, 1-2 a cycle)


@functools.lru_cache(maxsize=None)
def cpu_has(mcpu: str, feature: str) -> bool:
    """Whether LLVM's CPU `mcpu` has `feature` (e.g. "avx512vnni")."""
    import tvm
    from tvm.target import codegen

    return bool(codegen.target_has_features(feature, tvm.target.Target({"kind": "llvm", "mcpu": mcpu})))


def pairs_fit_int16(w: np.ndarray, axis: int) -> bool:
    """True when every pair of consecutive int8 weights along `axis` (from index 0) times any u8
    values sums inside int16, so vpmaddubsw cannot saturate."""
    w = np.moveaxis(w.astype(np.int64), axis, -1)
    w = np.pad(w, [(0, 0)] * (w.ndim - 1) + [(0, w.shape[-1] % 2)]).reshape(w.shape[:-1] + (-1, 2))
    high = 255 * np.maximum(w, 0).sum(axis=-1)
    low = 255 * np.minimum(w, 0).sum(axis=-1)
    return bool(high.max(initial=0) <= 2**15 - 1 and low.min(initial=0) >= -2**15)


def pick_instruction(mcpu: str, weights: np.ndarray, reduction_axis: int) -> DotInstruction | None:
    """The fastest instruction of INSTRUCTIONS that `mcpu` has and that is exact for these
    constant int8 weights (reduced over `reduction_axis`), or None."""
    return next((i for i in INSTRUCTIONS if cpu_has(mcpu, i.feature)
                 and (not i.needs_int16_pairs or pairs_fit_int16(weights, reduction_axis))), None)


def pick_tile(instr: DotInstruction, width: int, cols: int) -> tuple[int, int]:
    """(vectors, columns) of a register tile: 1 or 2 accumulator vectors across `width` output
    channels, and up to accumulators / vectors columns, the fewest cycles per useful step:
    padding of `cols` times the stall of a tile with fewer than MIN_ACCUMULATORS independent
    accumulators (larger tiles win ties)."""
    vecs = 2 if width > instr.lanes else 1
    cap = instr.accumulators // vecs

    def cost(c):
        return round(round_up(cols, c) / cols * max(1.0, MIN_ACCUMULATORS / (vecs * c)), 6), -c
    return vecs, min(range(1, min(cap, cols) + 1), key=cost)


# ---------------------------------------------------------------- packing and the scalar definition

def pack_u8_word(byte_at, pad_byte: int, valid_at=None):
    """TIR int32 word of 4 u8 bytes: byte i = byte_at(i) (an int32 0..255), or pad_byte where
    valid_at(i) is false."""
    from tvm import tirx

    word = tirx.const(0, "uint32")
    for i in range(4):
        b = byte_at(i)
        if valid_at is not None:
            b = tirx.if_then_else(valid_at(i), b, tirx.const(pad_byte, "int32"))
        word = word | (tirx.Cast("uint32", b) << tirx.const(8 * i, "uint32"))
    return tirx.Cast("int32", word)


def pack_weight_words(w: np.ndarray) -> np.ndarray:
    """int8 [..., 4] -> int32 [...] (byte i of each word = element i: little-endian)."""
    assert w.dtype == np.int8 and w.shape[-1] == 4
    return np.ascontiguousarray(w).view("<i4")[..., 0]


def dot4(a, b):
    """Scalar TIR of one lane: the 4 u8 bytes of word `a` times the 4 s8 bytes of word `b`, summed."""
    from tvm import tirx

    total = tirx.const(0, "int32")
    for i in range(4):
        ua = (a >> tirx.const(8 * i, "int32")) & tirx.const(255, "int32")
        sb = (b << tirx.const(24 - 8 * i, "int32")) >> tirx.const(24, "int32")
        total = total + ua * sb
    return total


# ---------------------------------------------------------------- the rewrite

def use_dot_instruction(func, block_name: str, instr: DotInstruction):
    """Replace the body of block `block_name` (the lane loop of a `te.sum(dot4(x_word, w_words))`
    block, blockized) with `instr` on the block's regions: acc[lanes] = instr(acc, x word, w[lanes]).

    Returns:
        the new PrimFunc.
    """
    from tvm import s_tir, tirx

    def load(region):
        idx = [r.min for r in region.region]
        lanes = int(region.region[-1].extent)
        if lanes > 1:
            idx[-1] = tirx.Ramp(idx[-1], 1, lanes)
        return tirx.BufferLoad(region.source, idx)

    def body(block):
        acc_region = block.writes[0]
        reads = [r for r in block.reads if not r.source.same_as(acc_region.source)]
        x_region = next(r for r in reads if int(r.region[-1].extent) == 1)
        w_region = next(r for r in reads if int(r.region[-1].extent) == instr.lanes)
        acc = load(acc_region)
        return tirx.BufferStore(acc_region.source, instr.emit(acc, load(x_region), load(w_region)), acc.indices)

    replaced = []

    def rebuild(stmt):
        if isinstance(stmt, tirx.For):
            new = rebuild(stmt.body)
            return stmt if new.same_as(stmt.body) else tirx.For(
                stmt.loop_var, stmt.min, stmt.extent, stmt.kind, new, stmt.thread_binding, stmt.annotations)
        if isinstance(stmt, tirx.SeqStmt):
            parts = [rebuild(s) for s in stmt.seq]
            return stmt if all(p.same_as(s) for p, s in zip(parts, stmt.seq)) else tirx.SeqStmt(parts)
        if isinstance(stmt, s_tir.SBlockRealize):
            b = stmt.block
            if b.name_hint == block_name:
                replaced.append(b)
                new_body = body(b)
            else:
                new_body = rebuild(b.body)
                if new_body.same_as(b.body):
                    return stmt
            block = s_tir.SBlock(b.iter_vars, b.reads, b.writes, b.name_hint, new_body, b.init,
                                 b.alloc_buffers, b.match_buffers, b.annotations)
            return s_tir.SBlockRealize(stmt.iter_values, stmt.predicate, block)
        return stmt

    new_body = rebuild(func.body)
    assert len(replaced) == 1, f"expected one block {block_name!r}, found {len(replaced)}"
    return func.with_body(new_body)


def dot_kernel(inputs, outputs, schedule, args, description: str, update_block: str,
               instr: DotInstruction) -> Kernel:
    """`make_kernel`, then the update block turned into `instr` (`use_dot_instruction`)."""
    k = make_kernel(inputs, outputs, schedule, args, description)
    k.func = use_dot_instruction(k.func, update_block, instr)
    return k
