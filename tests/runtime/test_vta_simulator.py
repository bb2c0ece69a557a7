"""The VTA simulator: bit-exact semantics, token protocol, clear refusals, cycle estimate."""
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from nnforge.runtime.vta import (Alu, AluOp, Finish, Gemm, Load, MemType, Store, TimingModel, Uop, VTADeadlockError,
                                 VTASimError, VTASimulator, encode_program, encode_uops, simulate)
from nnforge.runtime.vta.sram import SRAM, alu_apply

INP, WGT, UOP, ACC, OUT = MemType.INP, MemType.WGT, MemType.UOP, MemType.ACC, MemType.OUT
SYNC = Gemm(pop_next=True)  # a compute no-op that waits for the last store before FINISH


def on_load(insn):
    """`insn` run by the load module, ordered before FINISH by a token."""
    return [replace(insn, push_next=True), Gemm(pop_prev=True), Finish()]


def on_store(insn):
    """`insn` run by the store module, after compute and ordered before FINISH."""
    return [Gemm(push_next=True), replace(insn, pop_prev=True, push_prev=True), SYNC, Finish()]


def put(dram, elem_bytes, index, data):
    """Write `data` at DRAM element `index` of an `elem_bytes`-byte memory type."""
    raw = np.ascontiguousarray(data).view(np.uint8).ravel()
    dram[index * elem_bytes:index * elem_bytes + raw.size] = raw


def matmul_requant_program(shift, lo):
    """LOAD uops/bias/inp/wgt, GEMM, ALU bias+round+shift+clip, STORE: a 1x16x16 requantized matmul."""
    return [
        Load(memory_type=UOP, sram_base=0, dram_base=128, x_size=2, x_stride=2),
        Load(memory_type=ACC, sram_base=1, dram_base=32, x_size=1, x_stride=1),
        Load(memory_type=INP, sram_base=0, dram_base=0, x_size=1, x_stride=1),
        Load(memory_type=WGT, sram_base=0, dram_base=1, x_size=1, x_stride=1, push_next=True),
        Gemm(reset_reg=True, uop_bgn=0, uop_end=1, pop_prev=True),
        Gemm(uop_bgn=0, uop_end=1),
        Alu(alu_opcode=AluOp.ADD, uop_bgn=1, uop_end=2),  # acc[0] += acc[1] (bias)
        Alu(alu_opcode=AluOp.ADD, uop_bgn=0, uop_end=1, use_imm=True, imm=1 << (shift - 1)),
        Alu(alu_opcode=AluOp.SHR, uop_bgn=0, uop_end=1, use_imm=True, imm=shift),
        Alu(alu_opcode=AluOp.MIN, uop_bgn=0, uop_end=1, use_imm=True, imm=127),
        Alu(alu_opcode=AluOp.MAX, uop_bgn=0, uop_end=1, use_imm=True, imm=lo, push_next=True),
        Store(memory_type=OUT, sram_base=0, dram_base=64, x_size=1, x_stride=1, pop_prev=True, push_prev=True),
        SYNC, Finish(),
    ]


@pytest.mark.parametrize("shift, lo", [(7, -128), (9, 0), (1, -127)])
def test_matmul_requantize_bit_exact(shift, lo):
    rng = np.random.default_rng(shift)
    x = rng.integers(-128, 128, 16, dtype=np.int8)
    w = rng.integers(-128, 128, (16, 16), dtype=np.int8)  # [out][in]
    bias = rng.integers(-5000, 5000, 16).astype(np.int32)
    dram = np.zeros(4096, np.uint8)
    put(dram, 16, 0, x)
    put(dram, 256, 1, w)
    put(dram, 64, 32, bias)
    put(dram, 4, 128, encode_uops([Uop(0, 0, 0), Uop(0, 1, 0)]))
    stats = simulate(encode_program(matmul_requant_program(shift, lo)), dram)
    acc = w.astype(np.int64) @ x.astype(np.int64) + bias
    want = np.clip((acc + (1 << (shift - 1))) >> shift, lo, 127).astype(np.int8)
    np.testing.assert_array_equal(dram[1024:1040].view(np.int8), want)
    assert (stats.inp_load_nbytes, stats.wgt_load_nbytes, stats.acc_load_nbytes, stats.uop_load_nbytes,
            stats.out_store_nbytes, stats.gemm_counter, stats.alu_counter) == (16, 256, 64, 8, 16, 1, 5)


def _spec_loop(insn):
    """The (a, s, w) indices of VTA_SPEC.md section 4's loop, written literally."""
    for y in range(insn.iter_out):
        for x in range(insn.iter_in):
            for k in range(insn.uop_bgn, insn.uop_end):
                u = UOPS[k]
                yield (u.dst_idx + y * insn.dst_factor_out + x * insn.dst_factor_in,
                       u.src_idx + y * insn.src_factor_out + x * insn.src_factor_in,
                       u.wgt_idx + y * getattr(insn, "wgt_factor_out", 0) + x * getattr(insn, "wgt_factor_in", 0))


UOPS = [Uop(0, 0, 0), Uop(1, 2, 1), Uop(3, 1, 2)]


def test_gemm_and_alu_loops_match_the_spec_pseudocode():
    rng = np.random.default_rng(0)
    sram = SRAM()
    b = sram.buffers
    b["uop"][:3] = encode_uops(UOPS)
    b["inp"][:64] = rng.integers(-128, 128, b["inp"][:64].shape)
    b["wgt"][:64] = rng.integers(-128, 128, b["wgt"][:64].shape)
    b["acc"][:64] = rng.integers(-2**31, 2**31, b["acc"][:64].shape)
    want = b["acc"].astype(np.int64).copy()
    gemm = Gemm(uop_bgn=0, uop_end=3, iter_out=3, iter_in=2, dst_factor_out=5, dst_factor_in=1,
                src_factor_out=4, src_factor_in=3, wgt_factor_out=2, wgt_factor_in=7)
    for a, s, w in _spec_loop(gemm):  # a repeats across iterations: accumulation must add up
        want[a] = want[a] + b["inp"][s].astype(np.int64) @ b["wgt"][w].astype(np.int64).T
    want = ((want + 2**31) % 2**32 - 2**31).astype(np.int32)
    assert sram.gemm("t", gemm) == 18
    np.testing.assert_array_equal(b["acc"], want)
    alu = Alu(alu_opcode=AluOp.ADD, uop_bgn=1, uop_end=3, iter_out=2, iter_in=2, dst_factor_out=7,
              dst_factor_in=2, src_factor_out=1, src_factor_in=2)
    for a, s, _ in _spec_loop(alu):  # sources overlap earlier destinations: order matters
        want[a] = alu_apply(AluOp.ADD, want[a], want[s])
    sram.alu("t", alu)
    np.testing.assert_array_equal(b["acc"], want)


def test_alu_chain_reads_values_written_earlier_in_the_same_instruction():
    sram = SRAM()
    acc = sram.buffers["acc"]
    acc[:5] = np.arange(1, 6)[:, None, None]
    sram.buffers["uop"][0] = encode_uops([Uop(dst_idx=1, src_idx=0)])[0]
    sram.alu("t", Alu(alu_opcode=AluOp.ADD, uop_end=1, iter_in=4, dst_factor_in=1, src_factor_in=1))
    np.testing.assert_array_equal(acc[:5, 0, 0], [1, 3, 6, 10, 15])  # a prefix sum, not pairwise sums


@pytest.mark.parametrize("op, a, b, want", [
    (AluOp.ADD, 2**31 - 1, 1, -2**31), (AluOp.MUL, 65536, 65536, 0), (AluOp.MUL, -3, 7, -21),
    (AluOp.MIN, -5, 3, -5), (AluOp.MAX, -5, 3, 3), (AluOp.SHR, -7, 1, -4), (AluOp.SHR, 7, 1, 3),
    (AluOp.SHR, 3, -2, 12), (AluOp.SHR, 1, -31, -2**31), (AluOp.SHR, 5, 0, 5), (AluOp.SHR, -1, 40, -1),
])
def test_alu_integer_semantics(op, a, b, want):
    assert int(alu_apply(op, np.int32(a), b)) == want


def test_load_padding_and_2d_strides():
    dram = np.zeros(1024, np.uint8)
    rows = np.arange(1, 13, dtype=np.int8).repeat(16).reshape(12, 16)  # element e holds value e+1
    put(dram, 16, 0, rows)
    sim = VTASimulator()
    # a 2x3 window of a 4-wide image at (1, 1), padded by 1 top, 2 bottom, 1 left, 1 right
    sim.run(on_load(Load(memory_type=INP, sram_base=10, dram_base=5, y_size=2, x_size=3, x_stride=4,
                         y_pad_0=1, y_pad_1=2, x_pad_0=1, x_pad_1=1)), dram)
    got = sim.sram.buffers["inp"][10:10 + 5 * 5, 0, 0].reshape(5, 5)
    want = np.zeros((5, 5), np.int8)
    want[1:3, 1:4] = [[6, 7, 8], [10, 11, 12]]
    np.testing.assert_array_equal(got, want)


def test_store_truncates_without_saturation_and_honours_stride():
    sim = VTASimulator()
    sim.sram.buffers["acc"][:4] = np.array([300, -129, 127, 5])[:, None, None]
    dram = np.zeros(256, np.uint8)
    sim.run([Gemm(push_next=True), Store(memory_type=OUT, dram_base=1, y_size=2, x_size=2, x_stride=3,
                                         pop_prev=True, push_prev=True), SYNC, Finish()], dram)
    got = dram.view(np.int8)[::16][:8]
    np.testing.assert_array_equal(got, [0, 44, 127, 0, 127, 5, 0, 0])  # 300 -> 44, -129 -> 127


@pytest.mark.parametrize("program, match", [
    (on_load(Load(memory_type=INP, sram_base=2047, x_size=2)),
     r"instruction #0 LOAD INP: inp buffer index 2048 out of range \(elements \[2047, 2049\), depth 2048\)"),
    (on_load(Load(memory_type=WGT, dram_base=3, x_size=2)),
     r"instruction #0 LOAD WGT: DRAM element 4 \(bytes \[1024, 1280\)\) is beyond the 1024-byte DRAM image"),
    ([Gemm(uop_end=1, iter_in=3, dst_factor_in=1024), Finish()],
     r"instruction #0 GEMM: acc buffer index 2048 out of range \(depth 2048\) at iteration y=0, x=2, uop 0"),
    ([Alu(uop_end=1, src_factor_out=2048, iter_out=2), Finish()],
     r"instruction #0 ALU ADD: acc buffer index 2048 out of range \(depth 2048\) at iteration y=1"),
    ([Gemm(uop_bgn=8190, uop_end=8193), Finish()], r"uop buffer index 8192 out of range"),
    (on_store(Store(memory_type=OUT, sram_base=2040, x_size=9)), r"#1 STORE OUT: out buffer index 2048"),
    ([Load(memory_type=OUT), Finish()], r"instruction #0 LOAD OUT: bad memory type 4 for LOAD"),
    ([Load(memory_type=7), Finish()], r"instruction #0 LOAD type 7: bad memory type 7 for LOAD"),
    ([Store(memory_type=ACC), Finish()], r"instruction #0 STORE ACC: bad memory type 3 for STORE \(only OUT=4\)"),
    (on_store(Store(memory_type=OUT, x_pad_0=1, y_pad_1=2)),
     r"instruction #1 STORE OUT: STORE does not support padding \(y_pad_1=2, x_pad_0=1\)"),
    ([Load(memory_type=INP, pop_prev=True), Finish()], r"pop_prev is set but the load module has no previous"),
    ([Alu(alu_opcode=6, uop_end=1), Finish()], r"instruction #0 ALU op 6: bad ALU opcode 6"),
    ([Gemm()], r"program does not end with FINISH"),
    ([Finish(), Gemm()], r"instruction #0 FINISH: FINISH must be the last instruction"),
])
def test_simulator_rejects_bad_programs_clearly(program, match):
    with pytest.raises(VTASimError, match=match):
        simulate(program, np.zeros(1024, np.uint8))


@pytest.mark.parametrize("program, match", [
    ([Load(memory_type=INP), Gemm(pop_prev=True), Finish()],
     r"deadlock: compute module stuck at instruction #1 GEMM waiting on pop_prev \(load->compute queue empty\)"),
    ([Load(memory_type=INP, pop_next=True), Gemm(pop_prev=True, push_prev=True), Finish()],
     r"load module stuck at instruction #0 LOAD INP waiting on pop_next \(compute->load queue empty\)"),
    ([Gemm(push_next=True), Store(memory_type=OUT, pop_prev=True), Finish()],
     r"instruction #2 FINISH: reached while the store module has not run instruction #1 STORE OUT"),
    ([Gemm(push_next=True), Finish()],
     r"instruction #1 FINISH: token queues not empty at FINISH: compute->store holds 1 \(a push without"),
])
def test_simulator_detects_deadlock_and_unsynchronised_finish(program, match):
    with pytest.raises(VTADeadlockError, match=match):
        simulate(program, np.zeros(1024, np.uint8))


def tiled_program(n_tiles, buffers):
    """Per tile: LOAD 16 inp rows + 1 wgt tile, GEMM 16 rows, STORE; `buffers` SRAM halves rotate.

    A load into a half waits for compute to release it, and compute overwriting an acc half
    waits for the store that read it, so with 2 buffers tile t+1 loads while tile t computes.
    """
    prog = [Load(memory_type=UOP, x_size=2, x_stride=2, dram_base=512)]
    for t in range(n_tiles):
        h = t % buffers
        reuse_prev, reused_later = t >= buffers, t + buffers < n_tiles
        prog += [
            Load(memory_type=INP, sram_base=16 * h, dram_base=16 * t, x_size=16, x_stride=16, pop_next=reuse_prev),
            Load(memory_type=WGT, sram_base=h, dram_base=32 + t, x_size=1, x_stride=1, push_next=True),
            Gemm(reset_reg=True, uop_bgn=h, uop_end=h + 1, iter_in=16, dst_factor_in=1, src_factor_in=1,
                 pop_prev=True, pop_next=reuse_prev),
            Gemm(uop_bgn=h, uop_end=h + 1, iter_in=16, dst_factor_in=1, src_factor_in=1,
                 push_prev=reused_later, push_next=True),
            Store(memory_type=OUT, sram_base=16 * h, dram_base=256 + 16 * t, x_size=16, x_stride=16,
                  pop_prev=True, push_prev=reused_later or t == n_tiles - 1),
        ]
    return prog + [SYNC, Finish()]


def test_overlap_with_tokens_beats_serial_and_results_agree():
    rng = np.random.default_rng(3)
    n = 6
    x = rng.integers(-128, 128, (n, 16, 16), dtype=np.int8)
    w = rng.integers(-128, 128, (n, 16, 16), dtype=np.int8)
    base = np.zeros(32 * 256 + 8 * 256, np.uint8)
    put(base, 16, 0, x)
    put(base, 256, 32, w)
    put(base, 4, 512, encode_uops([Uop(0, 0, 0), Uop(16, 16, 1)]))
    want = np.einsum("tok,tik->tio", w.astype(np.int64), x.astype(np.int64)).astype(np.int8)
    runs = {}
    for buffers in (1, 2):
        dram = base.copy()
        runs[buffers] = simulate(tiled_program(n, buffers), dram)
        np.testing.assert_array_equal(dram[4096:4096 + n * 256].view(np.int8).reshape(n, 16, 16), want)
    serial, overlapped = runs[1], runs[2]
    assert serial.gemm_counter == overlapped.gemm_counter == n * 16
    assert overlapped.cycles < serial.cycles
    assert overlapped.utilisation > serial.utilisation
    # the estimate is honest: never below the busiest module, never above everything in series
    for s in (serial, overlapped):
        assert max(s.busy_cycles.values()) <= s.cycles <= sum(s.busy_cycles.values())
    # with tokens allowing it, some load runs while a GEMM does
    gemms = [(a, b) for _, m, a, b in overlapped.timeline if m == "compute" and b > a]
    loads = [(a, b) for _, m, a, b in overlapped.timeline if m == "load"]
    assert any(la < gb and ga < lb for la, lb in loads for ga, gb in gemms)


def test_cycle_costs_follow_the_timing_model():
    dram = np.zeros(4096, np.uint8)
    prog = [Load(memory_type=INP, x_size=4, x_stride=4, push_next=True),  # 64 B at 8 B/cycle: 8
            Gemm(pop_prev=True, uop_end=1, iter_in=10),  # 10 micro-ops: 10
            Alu(uop_end=1, iter_in=5, use_imm=True),  # 5 at interval 2: 10
            Finish()]
    st = simulate(prog, dram)
    assert [(m, a, b) for _, m, a, b in st.timeline] == [("load", 0, 8), ("compute", 8, 18),
                                                       ("compute", 18, 28), ("compute", 28, 28)]
    assert (st.cycles, st.gemm_cycles, st.utilisation) == (28, 10, 10 / 28)
    st = simulate(prog, dram, timing=TimingModel(dma_bytes_per_cycle=64, insn_overhead_cycles=1))
    assert st.cycles == 1 + 1 + 11 + 11
    assert st.as_dict()["utilisation"] == st.utilisation


def test_runtime_vta_does_not_import_the_compiler():
    code = ("import sys, nnforge.runtime.vta; "
            "print(sorted(m for m in sys.modules if m.startswith(('nnforge.codegen', 'nnforge.frontend', 'nnforge.passes'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
