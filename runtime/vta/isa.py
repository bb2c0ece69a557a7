"""VTA hardware configuration, instructions, micro-ops and their bit encoding (VTA_SPEC.md 1, 3).

Both the simulator (runtime) and the code generator (codegen.vta) use this module; it lives
in runtime because runtime must not import codegen.

Field positions are not hard-coded: like VTA's hw_spec.h they follow from the configuration
(index widths are log2 of buffer depths) and are packed in order into two 64-bit words,
because the C bitfield structs VTA was defined with never let a field straddle a uint64.
For the default configuration this yields exactly the positions in VTA_SPEC.md section 3.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum
from functools import cached_property, lru_cache

import numpy as np

from .errors import VTAEncodingError, VTAError


class Opcode(IntEnum):
    LOAD = 0
    STORE = 1
    GEMM = 2
    FINISH = 3
    ALU = 4


class MemType(IntEnum):
    UOP = 0
    WGT = 1
    INP = 2
    ACC = 3
    OUT = 4
    ACC_8BIT = 5


class AluOp(IntEnum):
    MIN = 0
    MAX = 1
    ADD = 2
    SHR = 3
    MUL = 4


INSN_BYTES = 16
UOP_BYTES = 4
LOOP_ITER_WIDTH = 14  # VTA_LOOP_ITER_WIDTH


@dataclass(frozen=True)
class VTAConfig:
    """A VTA hardware configuration; the default is `1x16_i8w8a32_15_15_18_17`.

    Buffer sizes are log2 of bytes, as in VTA's vta_config.json. Only int8 inputs and
    weights with int32 accumulators are modelled (the simulator's arithmetic assumes them).
    """

    log_inp_width: int = 3
    log_wgt_width: int = 3
    log_acc_width: int = 5
    log_batch: int = 0
    log_block: int = 4
    log_uop_buff_size: int = 15
    log_inp_buff_size: int = 15
    log_wgt_buff_size: int = 18
    log_acc_buff_size: int = 17

    def __post_init__(self):
        if (self.log_inp_width, self.log_wgt_width, self.log_acc_width) != (3, 3, 5):
            raise VTAError(f"VTA config {self.name}: only i8w8a32 is supported")
        for kind in ("uop", "inp", "wgt", "acc"):
            if self.log_depth(kind) < 1:
                raise VTAError(f"VTA config {self.name}: {kind} buffer holds fewer than 2 elements")

    @property
    def batch(self) -> int:
        return 1 << self.log_batch

    @property
    def block_in(self) -> int:
        return 1 << self.log_block

    @property
    def block_out(self) -> int:
        return 1 << self.log_block

    @property
    def name(self) -> str:
        return (f"{self.batch}x{self.block_in}_i{1 << self.log_inp_width}w{1 << self.log_wgt_width}"
                f"a{1 << self.log_acc_width}_{self.log_uop_buff_size}_{self.log_inp_buff_size}"
                f"_{self.log_wgt_buff_size}_{self.log_acc_buff_size}")

    @cached_property
    def elem_bytes(self) -> dict[str, int]:
        """Bytes of one SRAM element per buffer kind ('uop', 'inp', 'wgt', 'acc', 'out')."""
        return {"uop": UOP_BYTES, "inp": self.batch * self.block_in, "wgt": self.block_out * self.block_in,
                "acc": self.batch * self.block_out * 4, "out": self.batch * self.block_out}

    def log_depth(self, kind: str) -> int:
        """log2 of the depth (elements) of buffer `kind`; out mirrors acc row for row."""
        size = {"uop": self.log_uop_buff_size, "inp": self.log_inp_buff_size,
                "wgt": self.log_wgt_buff_size, "acc": self.log_acc_buff_size,
                "out": self.log_acc_buff_size - 2}[kind]
        return size - (self.elem_bytes[kind].bit_length() - 1)

    def depth(self, kind: str) -> int:
        """Depth in elements of buffer `kind` ('uop', 'inp', 'wgt', 'acc', 'out')."""
        return 1 << self.log_depth(kind)


DEFAULT_CONFIG = VTAConfig()

# Which SRAM buffer and DRAM element each memory type addresses (ACC_8BIT: int8 lanes -> acc).
MEM_BUFFER = {MemType.UOP: "uop", MemType.WGT: "wgt", MemType.INP: "inp", MemType.ACC: "acc",
              MemType.OUT: "out", MemType.ACC_8BIT: "acc"}
MEM_DRAM_ELEM = {MemType.UOP: "uop", MemType.WGT: "wgt", MemType.INP: "inp", MemType.ACC: "acc",
                 MemType.OUT: "out", MemType.ACC_8BIT: "out"}


@dataclass(frozen=True, kw_only=True)
class _Insn:
    pop_prev: bool = False
    pop_next: bool = False
    push_prev: bool = False
    push_next: bool = False


@dataclass(frozen=True, kw_only=True)
class _MemInsn(_Insn):
    memory_type: int
    sram_base: int = 0
    dram_base: int = 0
    y_size: int = 1
    x_size: int = 1
    x_stride: int = 1
    y_pad_0: int = 0
    y_pad_1: int = 0
    x_pad_0: int = 0
    x_pad_1: int = 0


@dataclass(frozen=True, kw_only=True)
class Load(_MemInsn):
    """DRAM -> SRAM 2-D copy with zero padding (VTA_SPEC.md 4)."""

    OPCODE = Opcode.LOAD


@dataclass(frozen=True, kw_only=True)
class Store(_MemInsn):
    """OUT SRAM -> DRAM 2-D copy; padding is not allowed."""

    OPCODE = Opcode.STORE


@dataclass(frozen=True, kw_only=True)
class _LoopInsn(_Insn):
    uop_bgn: int = 0
    uop_end: int = 0
    iter_out: int = 1
    iter_in: int = 1
    dst_factor_out: int = 0
    dst_factor_in: int = 0
    src_factor_out: int = 0
    src_factor_in: int = 0


@dataclass(frozen=True, kw_only=True)
class Gemm(_LoopInsn):
    """acc[dst] (+)= inp[src] @ wgt[w].T over a two-level micro-op loop; reset_reg zeroes acc[dst]."""

    OPCODE = Opcode.GEMM
    reset_reg: bool = False
    wgt_factor_out: int = 0
    wgt_factor_in: int = 0


@dataclass(frozen=True, kw_only=True)
class Alu(_LoopInsn):
    """acc[dst] = op(acc[dst], imm or acc[src]) over a two-level micro-op loop."""

    OPCODE = Opcode.ALU
    alu_opcode: int = AluOp.ADD
    use_imm: bool = False
    imm: int = 0


@dataclass(frozen=True)
class Finish:
    """End of program; every field other than the opcode is zero, so it never pops or pushes."""

    OPCODE = Opcode.FINISH


@dataclass(frozen=True)
class Uop:
    """A micro-op: buffer indices a GEMM/ALU loop body adds its loop offsets to."""

    dst_idx: int = 0
    src_idx: int = 0
    wgt_idx: int = 0


Insn = Load | Store | Gemm | Alu | Finish
_BY_OPCODE = {Opcode.LOAD: Load, Opcode.STORE: Store, Opcode.GEMM: Gemm, Opcode.ALU: Alu,
              Opcode.FINISH: Finish}
_BOOL_FIELDS = {"pop_prev", "pop_next", "push_prev", "push_next", "reset_reg", "use_imm"}
_SIGNED_FIELDS = {"imm"}


def _pack(*words: tuple[tuple[str, int], ...]) -> dict[str, tuple[int, int]]:
    """Lay (name, width) fields out in order, each group in its own 64-bit word."""
    layout = {}
    for w, group in enumerate(words):
        bit = 64 * w
        for name, width in group:
            layout[name] = (bit, width)
            bit += width
        if bit > 64 * (w + 1):
            raise VTAError(f"instruction word {w} needs {bit - 64 * w} bits (> 64) in this VTA config")
    return layout


@lru_cache(maxsize=None)
def field_layout(kind: type, config: VTAConfig = DEFAULT_CONFIG) -> dict[str, tuple[int, int]]:
    """Bit layout of one instruction kind (or Uop) under `config`.

    Args:
        kind: Load, Store, Gemm, Alu, Finish or Uop.
        config: the hardware configuration (index widths follow its buffer depths).
    Returns:
        {field name: (lsb, width)}; bits not listed must be zero.
    """
    head = (("opcode", 3), ("pop_prev", 1), ("pop_next", 1), ("push_prev", 1), ("push_next", 1))
    acc, inp, wgt, uop = (config.log_depth(k) for k in ("acc", "inp", "wgt", "uop"))
    if kind is Uop:
        if acc + inp + wgt > 32:
            raise VTAError(f"VTA config {config.name}: a micro-op needs {acc + inp + wgt} bits (> 32)")
        return _pack((("dst_idx", acc), ("src_idx", inp), ("wgt_idx", wgt)))
    if kind is Finish:
        return _pack((("opcode", 3),))
    if kind in (Load, Store):
        return _pack(head + (("memory_type", 3), ("sram_base", 16), ("dram_base", 32)),
                     (("y_size", 16), ("x_size", 16), ("x_stride", 16), ("y_pad_0", 4),
                      ("y_pad_1", 4), ("x_pad_0", 4), ("x_pad_1", 4)))
    loop = (("uop_bgn", uop), ("uop_end", uop + 1), ("iter_out", LOOP_ITER_WIDTH),
            ("iter_in", LOOP_ITER_WIDTH))
    factors = (("dst_factor_out", acc), ("dst_factor_in", acc), ("src_factor_out", inp),
               ("src_factor_in", inp))
    if kind is Gemm:
        return _pack(head + (("reset_reg", 1),) + loop,
                     factors + (("wgt_factor_out", wgt), ("wgt_factor_in", wgt)))
    if kind is Alu:
        # bit 7 (GEMM's reset_reg) is reserved in ALU: TVM always leaves it 0.
        return _pack(head + (("_reserved_reset", 1),) + loop,
                     factors + (("alu_opcode", 3), ("use_imm", 1), ("imm", 16)))
    raise VTAEncodingError(f"not a VTA instruction kind: {kind!r}")


def insn_name(insn) -> str:
    """Short human name of an instruction, e.g. 'LOAD INP', 'ALU SHR', 'GEMM'."""
    name = Opcode(insn.OPCODE).name
    if isinstance(insn, (Load, Store)):
        mt = insn.memory_type
        return f"{name} {MemType(mt).name if mt in MemType._value2member_map_ else f'type {mt}'}"
    if isinstance(insn, Alu):
        op = insn.alu_opcode
        return f"ALU {AluOp(op).name if op in AluOp._value2member_map_ else f'op {op}'}"
    return name


def _encode_fields(obj, what: str, layout: dict[str, tuple[int, int]]) -> int:
    word = 0
    for name, (lsb, width) in layout.items():
        if name == "opcode":
            value = int(obj.OPCODE)
        elif name.startswith("_reserved"):
            continue
        else:
            value = getattr(obj, name)
        if isinstance(value, bool) or name in _BOOL_FIELDS:
            if value not in (0, 1, True, False):
                raise VTAEncodingError(f"{what} field {name}={value!r} must be 0/1")
            value = int(value)
        if not isinstance(value, (int, np.integer)):
            raise VTAEncodingError(f"{what} field {name}={value!r} is not an integer")
        value = int(value)
        lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if name in _SIGNED_FIELDS else (0, (1 << width) - 1)
        if not lo <= value <= hi:
            raise VTAEncodingError(f"{what} field {name}={value} out of range [{lo}, {hi}] ({width} bits)")
        word |= (value & ((1 << width) - 1)) << lsb
    return word


def _decode_fields(word: int, what: str, layout: dict[str, tuple[int, int]], total_bits: int) -> dict:
    covered = 0
    values = {}
    for name, (lsb, width) in layout.items():
        mask = (1 << width) - 1
        covered |= mask << lsb
        if name.startswith("_reserved"):
            covered &= ~(mask << lsb)
            continue
        value = (word >> lsb) & mask
        if name in _SIGNED_FIELDS and value >> (width - 1):
            value -= 1 << width
        values[name] = bool(value) if name in _BOOL_FIELDS else value
    stray = word & ~covered & ((1 << total_bits) - 1)
    if stray:
        bits = [b for b in range(total_bits) if stray >> b & 1]
        raise VTAEncodingError(f"{what}: reserved bits {bits} are set (must be 0)")
    values.pop("opcode", None)
    return values


def encode(insn, config: VTAConfig = DEFAULT_CONFIG) -> int:
    """Encode one instruction as a 128-bit integer (bit 0 = LSB).

    Args:
        insn: a Load, Store, Gemm, Alu or Finish.
        config: hardware configuration (decides index field widths).
    Returns:
        The instruction word; `to_bytes(16, 'little')` gives its memory image.
    Raises:
        VTAEncodingError naming the instruction and field when a value does not fit.
    """
    return _encode_fields(insn, insn_name(insn), field_layout(type(insn), config))


def decode(word: int | bytes, config: VTAConfig = DEFAULT_CONFIG):
    """Decode a 128-bit instruction (an int, or 16 little-endian bytes).

    Returns:
        The Load/Store/Gemm/Alu/Finish it encodes. Memory and ALU opcodes outside their
        enums are kept as ints so the simulator can report them in context.
    Raises:
        VTAEncodingError on an unknown opcode or set reserved bits.
    """
    if isinstance(word, (bytes, bytearray, memoryview)):
        if len(word) != INSN_BYTES:
            raise VTAEncodingError(f"an instruction is {INSN_BYTES} bytes, got {len(word)}")
        word = int.from_bytes(word, "little")
    if not 0 <= word < 1 << 128:
        raise VTAEncodingError(f"instruction word {word:#x} is not a 128-bit unsigned value")
    opcode = word & 7
    if opcode not in _BY_OPCODE:
        raise VTAEncodingError(f"unknown VTA opcode {opcode} in {word:#034x}")
    cls = _BY_OPCODE[Opcode(opcode)]
    return cls(**_decode_fields(word, Opcode(opcode).name, field_layout(cls, config), 128))


def encode_uop(uop: Uop, config: VTAConfig = DEFAULT_CONFIG) -> int:
    """Encode a micro-op as a 32-bit integer; raises VTAEncodingError on a field out of range."""
    return _encode_fields(uop, "UOP", field_layout(Uop, config))


def decode_uop(word: int, config: VTAConfig = DEFAULT_CONFIG) -> Uop:
    """Decode a 32-bit micro-op word."""
    return Uop(**_decode_fields(int(word), "UOP", field_layout(Uop, config), 32))


def uop_fields(words: np.ndarray, config: VTAConfig = DEFAULT_CONFIG) -> tuple[np.ndarray, ...]:
    """Vectorised micro-op decode.

    Args:
        words: uint32 micro-op words.
    Returns:
        (dst_idx, src_idx, wgt_idx) as int64 arrays.
    """
    words = np.asarray(words, dtype=np.int64)
    return tuple((words >> lsb) & ((1 << width) - 1) for lsb, width in field_layout(Uop, config).values())


def encode_program(insns, config: VTAConfig = DEFAULT_CONFIG) -> bytes:
    """Memory image of an instruction stream (16 little-endian bytes per instruction)."""
    return b"".join(encode(i, config).to_bytes(INSN_BYTES, "little") for i in insns)


def decode_program(data: bytes, config: VTAConfig = DEFAULT_CONFIG) -> list:
    """Inverse of encode_program; raises VTAEncodingError if the length is not a multiple of 16."""
    if len(data) % INSN_BYTES:
        raise VTAEncodingError(f"instruction stream of {len(data)} bytes is not a multiple of {INSN_BYTES}")
    return [decode(bytes(data[i:i + INSN_BYTES]), config) for i in range(0, len(data), INSN_BYTES)]


def encode_uops(uops, config: VTAConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Micro-ops as a uint32 array (its .tobytes() is the DRAM image on a little-endian host)."""
    return np.array([encode_uop(u, config) for u in uops], dtype="<u4")


def insn_fields(insn) -> dict:
    """{field name: value} of an instruction dataclass (for printing and tests)."""
    return {f.name: getattr(insn, f.name) for f in fields(insn)}
