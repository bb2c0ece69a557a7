"""VTA instruction encoding: every field at its limits, positions as VTA_SPEC.md section 3 lists them."""
import pytest

from nnforge.runtime.vta import (Alu, AluOp, DEFAULT_CONFIG, Finish, Gemm, Load, MemType, Store, Uop, VTAConfig,
                                 VTAEncodingError, decode, decode_program, decode_uop, encode, encode_program,
                                 encode_uop)

# Written from the spec's text, independently of isa.field_layout: (lsb, msb) inclusive.
HEADER = {"pop_prev": (3, 3), "pop_next": (4, 4), "push_prev": (5, 5), "push_next": (6, 6)}
MEM = {**HEADER, "memory_type": (7, 9), "sram_base": (10, 25), "dram_base": (26, 57), "y_size": (64, 79),
       "x_size": (80, 95), "x_stride": (96, 111), "y_pad_0": (112, 115), "y_pad_1": (116, 119),
       "x_pad_0": (120, 123), "x_pad_1": (124, 127)}
LOOP = {**HEADER, "uop_bgn": (8, 20), "uop_end": (21, 34), "iter_out": (35, 48), "iter_in": (49, 62),
        "dst_factor_out": (64, 74), "dst_factor_in": (75, 85), "src_factor_out": (86, 96),
        "src_factor_in": (97, 107)}
SPEC = {
    Load: (0, MEM), Store: (1, MEM),
    Gemm: (2, {**LOOP, "reset_reg": (7, 7), "wgt_factor_out": (108, 117), "wgt_factor_in": (118, 127)}),
    Alu: (4, {**LOOP, "alu_opcode": (108, 110), "use_imm": (111, 111), "imm": (112, 127)}),
}
UOP_SPEC = {"dst_idx": (0, 10), "src_idx": (11, 21), "wgt_idx": (22, 31)}
BASE = {Load: {"memory_type": 0}, Store: {"memory_type": 0}, Gemm: {}, Alu: {"alu_opcode": 0}}


def _max(name, lo, hi):
    width = hi - lo + 1
    if name in HEADER or name in ("reset_reg", "use_imm"):
        return True
    return (1 << (width - 1)) - 1 if name == "imm" else (1 << width) - 1


def _zeros(kind):
    """An instruction of `kind` with every field 0."""
    zero = {name: (False if name in HEADER or name in ("reset_reg", "use_imm") else 0) for name in SPEC[kind][1]}
    return kind(**zero)


@pytest.mark.parametrize("kind", [Load, Store, Gemm, Alu])
def test_each_field_at_max_lands_on_its_spec_bits(kind):
    opcode, spec = SPEC[kind]
    assert encode(_zeros(kind)) == opcode
    for name, (lo, hi) in spec.items():
        insn = kind(**{**{n: getattr(_zeros(kind), n) for n in spec}, name: _max(name, lo, hi)})
        want = opcode | (int(_max(name, lo, hi)) << lo)
        assert encode(insn) == want, name
        assert decode(want) == insn, name


@pytest.mark.parametrize("kind", [Load, Store, Gemm, Alu])
def test_all_fields_at_max_and_zero_round_trip(kind):
    opcode, spec = SPEC[kind]
    # imm=-1 sets all 16 imm bits (its limits are tested separately)
    top = kind(**{name: -1 if name == "imm" else _max(name, lo, hi) for name, (lo, hi) in spec.items()})
    word = encode(top)
    covered = sum(((1 << (hi - lo + 1)) - 1) << lo for lo, hi in spec.values()) | 7
    assert word == (covered & ~7) | opcode  # every spec bit set, nothing else
    assert decode(word) == top
    assert decode(word.to_bytes(16, "little")) == top
    assert decode(encode(_zeros(kind))) == _zeros(kind)


def test_alu_immediate_is_signed_16_bit():
    for imm in (-32768, -1, 0, 1, 32767):
        insn = Alu(alu_opcode=AluOp.SHR, use_imm=True, imm=imm)
        assert decode(encode(insn)).imm == imm
    assert encode(Alu(imm=-1)) >> 112 == 0xFFFF
    with pytest.raises(VTAEncodingError, match=r"ALU ADD field imm=32768 out of range \[-32768, 32767\]"):
        encode(Alu(imm=32768))
    with pytest.raises(VTAEncodingError, match=r"imm=-32769 out of range"):
        encode(Alu(imm=-32769))


@pytest.mark.parametrize("insn, match", [
    (Gemm(uop_end=1 << 14), r"GEMM field uop_end=16384 out of range \[0, 16383\] \(14 bits\)"),
    (Gemm(uop_bgn=8192), r"GEMM field uop_bgn=8192 out of range \[0, 8191\] \(13 bits\)"),
    (Gemm(wgt_factor_in=1024), r"GEMM field wgt_factor_in=1024 out of range \[0, 1023\]"),
    (Load(memory_type=MemType.INP, x_pad_1=16), r"LOAD INP field x_pad_1=16 out of range \[0, 15\]"),
    (Store(memory_type=MemType.OUT, dram_base=1 << 32), r"STORE OUT field dram_base=4294967296 out of range"),
    (Load(memory_type=8), r"LOAD type 8 field memory_type=8 out of range \[0, 7\]"),
    (Alu(iter_out=-1), r"ALU ADD field iter_out=-1 out of range"),
    (Alu(alu_opcode=AluOp.MIN, pop_prev=2), r"ALU MIN field pop_prev=2 must be 0/1"),
])
def test_out_of_range_fields_name_instruction_and_field(insn, match):
    with pytest.raises(VTAEncodingError, match=match):
        encode(insn)


def test_finish_is_opcode_only_and_decode_rejects_garbage():
    assert encode(Finish()) == 3
    assert decode(3) == Finish()
    with pytest.raises(VTAEncodingError, match=r"FINISH: reserved bits \[3\] are set"):
        decode(3 | 1 << 3)  # FINISH never pops
    with pytest.raises(VTAEncodingError, match=r"ALU: reserved bits \[7\] are set"):
        decode(encode(Alu()) | 1 << 7)  # ALU has no reset_reg
    with pytest.raises(VTAEncodingError, match=r"LOAD: reserved bits \[58, 63\] are set"):
        decode(encode(Load(memory_type=2)) | 1 << 58 | 1 << 63)
    with pytest.raises(VTAEncodingError, match="unknown VTA opcode 5"):
        decode(5)
    with pytest.raises(VTAEncodingError, match="an instruction is 16 bytes, got 15"):
        decode(b"\0" * 15)


def test_uop_fields_at_limits_round_trip():
    for name, (lo, hi) in UOP_SPEC.items():
        top = (1 << (hi - lo + 1)) - 1
        assert encode_uop(Uop(**{name: top})) == top << lo
    full = Uop(dst_idx=2047, src_idx=2047, wgt_idx=1023)
    assert encode_uop(full) == 0xFFFFFFFF and decode_uop(0xFFFFFFFF) == full
    assert decode_uop(encode_uop(Uop())) == Uop()
    with pytest.raises(VTAEncodingError, match=r"UOP field wgt_idx=1024 out of range \[0, 1023\]"):
        encode_uop(Uop(wgt_idx=1024))


def test_program_bytes_round_trip():
    prog = [Load(memory_type=MemType.INP, x_size=3, x_stride=3, push_next=True),
            Gemm(reset_reg=True, uop_end=1, pop_prev=True), Alu(alu_opcode=AluOp.MAX, use_imm=True, imm=-127),
            Store(memory_type=MemType.OUT, x_size=3, x_stride=3), Finish()]
    data = encode_program(prog)
    assert len(data) == 16 * len(prog) and data[:16] == encode(prog[0]).to_bytes(16, "little")
    assert decode_program(data) == prog


def test_config_default_and_derived_widths():
    c = DEFAULT_CONFIG
    assert c.name == "1x16_i8w8a32_15_15_18_17"
    assert {k: c.depth(k) for k in ("uop", "inp", "wgt", "acc", "out")} == \
        {"uop": 8192, "inp": 2048, "wgt": 1024, "acc": 2048, "out": 2048}
    assert c.elem_bytes == {"uop": 4, "inp": 16, "wgt": 256, "acc": 64, "out": 16}
    small = VTAConfig(log_wgt_buff_size=16)  # 256 weight tiles: 8-bit wgt indices
    assert small.depth("wgt") == 256
    insn = Gemm(wgt_factor_in=255)
    assert decode(encode(insn, small), small) == insn
    with pytest.raises(VTAEncodingError, match=r"wgt_factor_in=256 out of range \[0, 255\]"):
        encode(Gemm(wgt_factor_in=256), small)
