"""The VTA simulator: fetch, the load/compute/store modules and their token queues, statistics
and a cycle estimate (VTA_SPEC.md sections 2 and 5).

Functional effects are in sram.py. Here the three modules run their in-order queues; an
instruction pops its tokens before executing and pushes after. Execution is functional and
timing is modelled alongside: each module has a clock, an instruction starts when its module
is free and the tokens it pops were pushed, and a pushed token carries its producer's end time.
Because each token FIFO is in order, the k-th pop always meets the k-th push, so one pass gives
both the results and the overlapped timeline.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import VTADeadlockError, VTASimError
from .isa import (DEFAULT_CONFIG, Alu, Finish, Gemm, Load, MemType, Store, VTAConfig, decode_program,
                  insn_name)
from .sram import SRAM

MODULES = ("load", "compute", "store")
_QUEUE_NAMES = {("load", "compute"): "load->compute", ("compute", "load"): "compute->load",
                ("compute", "store"): "compute->store", ("store", "compute"): "store->compute"}
_LOAD_COUNTER = {MemType.INP: "inp_load_nbytes", MemType.WGT: "wgt_load_nbytes",
                 MemType.ACC: "acc_load_nbytes", MemType.ACC_8BIT: "acc_load_nbytes",
                 MemType.UOP: "uop_load_nbytes"}


@dataclass(frozen=True)
class TimingModel:
    """Cycle costs of the estimate. Defaults: one 1xBLOCKxBLOCK GEMM micro-op per cycle, ALU
    initiation interval 2, DMA at 8 B/cycle (pynq's 64-bit AXI), no per-instruction overhead."""

    dma_bytes_per_cycle: float = 8.0
    gemm_cycles_per_uop: int = 1
    alu_initiation_interval: int = 2
    insn_overhead_cycles: int = 0


@dataclass
class SimStats:
    """The spec's counters plus the cycle estimate of one run."""

    inp_load_nbytes: int = 0
    wgt_load_nbytes: int = 0
    acc_load_nbytes: int = 0
    uop_load_nbytes: int = 0
    out_store_nbytes: int = 0
    gemm_counter: int = 0
    alu_counter: int = 0
    cycles: int = 0
    gemm_cycles: int = 0
    busy_cycles: dict = field(default_factory=lambda: dict.fromkeys(MODULES, 0))
    timeline: list = field(default_factory=list)  # (insn index, module, start, end)

    @property
    def utilisation(self) -> float:
        """GEMM busy cycles / total cycles (0 for an empty run)."""
        return self.gemm_cycles / self.cycles if self.cycles else 0.0

    def as_dict(self) -> dict:
        """Counters, cycles and utilisation (without the timeline), for reports."""
        d = asdict(self)
        d.pop("timeline")
        d["utilisation"] = self.utilisation
        return d


def _route(where: str, insn) -> str:
    """The module fetch sends an instruction to; rejects bad memory types and impossible flags."""
    if isinstance(insn, Store):
        if insn.memory_type != MemType.OUT:
            raise VTASimError(f"{where}: bad memory type {insn.memory_type} for STORE (only OUT={MemType.OUT.value})")
        module = "store"
    elif isinstance(insn, Load):
        mt = insn.memory_type
        if mt in (MemType.INP, MemType.WGT):
            module = "load"
        elif mt in (MemType.UOP, MemType.ACC, MemType.ACC_8BIT):
            module = "compute"
        else:
            raise VTASimError(f"{where}: bad memory type {mt} for LOAD "
                              f"(valid: UOP=0, WGT=1, INP=2, ACC=3, ACC_8BIT=5)")
    elif isinstance(insn, (Gemm, Alu, Finish)):
        module = "compute"
    else:
        raise VTASimError(f"{where}: not a VTA instruction: {insn!r}")
    # load has no previous neighbour and store no next one: such a flag could never be matched
    bad = {"load": ("pop_prev", "push_prev"), "store": ("pop_next", "push_next")}.get(module, ())
    for flag in bad:
        if getattr(insn, flag):
            raise VTASimError(f"{where}: {flag} is set but the {module} module has no "
                              f"{'previous' if 'prev' in flag else 'next'} neighbour")
    return module


def _neighbour(module: str, side: str) -> str:
    return MODULES[MODULES.index(module) + (-1 if side == "prev" else 1)]


class VTASimulator:
    """Functional VTA simulator with statistics and a cycle estimate.

    SRAM contents persist across `run` calls, as they would on the device.
    """

    def __init__(self, config: VTAConfig = DEFAULT_CONFIG, timing: TimingModel = TimingModel()):
        self.config = config
        self.timing = timing
        self.sram = SRAM(config)

    def run(self, program, dram) -> SimStats:
        """Execute an instruction stream against a DRAM image.

        Args:
            program: a list of instructions, or their encoded bytes (16 per instruction).
            dram: a 1-D uint8 numpy array or a bytearray; updated in place by STOREs. DRAM
                addresses are dram_base * element size of the memory type.
        Returns:
            SimStats with the spec's counters, cycles, utilisation and the per-instruction timeline.
        Raises:
            VTASimError on out-of-bounds access, a bad memory type, STORE padding or bad flags;
            VTADeadlockError when no module can progress or FINISH is reached unsynchronised.
        """
        insns = decode_program(bytes(program), self.config) if isinstance(program, (bytes, bytearray)) else list(program)
        mem = self._dram_view(dram)
        queues = {m: deque() for m in MODULES}
        for i, insn in enumerate(insns):
            where = f"instruction #{i} {insn_name(insn)}"
            if isinstance(insn, Finish) and i != len(insns) - 1:
                raise VTASimError(f"{where}: FINISH must be the last instruction ({len(insns) - i - 1} follow it)")
            queues[_route(where, insn)].append(i)
        if not insns or not isinstance(insns[-1], Finish):
            raise VTASimError("program does not end with FINISH")
        return _Run(self, insns, queues, mem).execute()

    @staticmethod
    def _dram_view(dram) -> np.ndarray:
        if isinstance(dram, bytearray):
            return np.frombuffer(dram, np.uint8)
        if isinstance(dram, np.ndarray) and dram.dtype == np.uint8 and dram.ndim == 1:
            if not dram.flags.writeable:
                raise VTASimError("the DRAM image is read-only; STOREs need to write it")
            return dram
        raise VTASimError(f"the DRAM image must be a bytearray or a 1-D uint8 array, got {type(dram).__name__}")


class _Run:
    """One execution: queue pointers, token FIFOs of producer end times, module clocks, stats."""

    def __init__(self, sim: VTASimulator, insns, queues, mem):
        self.sim, self.insns, self.queues, self.mem = sim, insns, queues, mem
        self.tokens = {pair: deque() for pair in _QUEUE_NAMES}
        self.clock = dict.fromkeys(MODULES, 0)
        self.stats = SimStats()

    def _pops(self, module: str, insn) -> list[tuple[str, str]]:
        return [(_neighbour(module, side), module) for side in ("prev", "next") if getattr(insn, f"pop_{side}", False)]

    def _ready(self, module: str) -> bool:
        q = self.queues[module]
        return bool(q) and all(self.tokens[p] for p in self._pops(module, self.insns[q[0]]))

    def _pick(self) -> str | None:
        # Compute runs as early as its tokens allow and the others only when compute waits, so
        # a FINISH that no token orders after pending loads/stores is caught deterministically.
        if self._ready("compute"):
            return "compute"
        order = ["load", "store"]
        q = self.queues["compute"]
        if q:  # first run the modules compute is waiting on
            waited = [src for src, _ in self._pops("compute", self.insns[q[0]])]
            order.sort(key=lambda m: m not in waited)
        return next((m for m in order if self._ready(m)), None)

    def execute(self) -> SimStats:
        while (module := self._pick()) is not None:
            self._step(module)
        stuck = [m for m in MODULES if self.queues[m]]
        if stuck:
            raise VTADeadlockError("deadlock: " + "; ".join(self._why_stuck(m) for m in stuck))
        self.stats.cycles = max(self.clock.values())
        return self.stats

    def _why_stuck(self, module: str) -> str:
        i = self.queues[module][0]
        insn = self.insns[i]
        missing = [f"{'pop_prev' if src == _neighbour(module, 'prev') else 'pop_next'} "
                   f"({_QUEUE_NAMES[(src, dst)]} queue empty)"
                   for src, dst in self._pops(module, insn) if not self.tokens[(src, dst)]]
        return f"{module} module stuck at instruction #{i} {insn_name(insn)} waiting on {', '.join(missing)}"

    def _step(self, module: str):
        i = self.queues[module].popleft()
        insn = self.insns[i]
        where = f"instruction #{i} {insn_name(insn)}"
        start = self.clock[module]
        for pair in self._pops(module, insn):
            start = max(start, self.tokens[pair].popleft())
        cycles = self._execute(where, insn)
        end = start + cycles + (0 if isinstance(insn, Finish) else self.sim.timing.insn_overhead_cycles)
        self.clock[module] = end
        self.stats.busy_cycles[module] += end - start
        self.stats.timeline.append((i, module, start, end))
        for side in ("prev", "next"):
            if getattr(insn, f"push_{side}", False):
                self.tokens[(module, _neighbour(module, side))].append(end)
        if isinstance(insn, Finish):
            self._check_finish(where)

    def _execute(self, where: str, insn) -> int:
        """Apply one instruction; update counters; return its cycle cost."""
        t, st, sram = self.sim.timing, self.stats, self.sim.sram
        if isinstance(insn, Load):
            nbytes = sram.load(where, insn, self.mem)
            counter = _LOAD_COUNTER[MemType(insn.memory_type)]
            setattr(st, counter, getattr(st, counter) + nbytes)
            return math.ceil(nbytes / t.dma_bytes_per_cycle)
        if isinstance(insn, Store):
            nbytes = sram.store(where, insn, self.mem)
            st.out_store_nbytes += nbytes
            return math.ceil(nbytes / t.dma_bytes_per_cycle)
        if isinstance(insn, Gemm):
            n = sram.gemm(where, insn)
            cycles = n * t.gemm_cycles_per_uop
            if not insn.reset_reg:
                st.gemm_counter += n
                st.gemm_cycles += cycles
            return cycles
        if isinstance(insn, Alu):
            n = sram.alu(where, insn)
            st.alu_counter += n
            return n * t.alu_initiation_interval
        return 0  # FINISH

    def _check_finish(self, where: str):
        for m in ("load", "store"):
            if self.queues[m]:
                j = self.queues[m][0]
                raise VTADeadlockError(
                    f"{where}: reached while the {m} module has not run instruction #{j} "
                    f"{insn_name(self.insns[j])}; no token orders it before FINISH (end the program "
                    f"with a compute instruction that pops from load and store)")
        left = {_QUEUE_NAMES[p]: len(q) for p, q in self.tokens.items() if q}
        if left:
            raise VTADeadlockError(f"{where}: token queues not empty at FINISH: "
                                   + ", ".join(f"{k} holds {v}" for k, v in left.items())
                                   + " (a push without a matching pop)")


def simulate(program, dram, config: VTAConfig = DEFAULT_CONFIG, timing: TimingModel = TimingModel()) -> SimStats:
    """Run `program` on a fresh simulator (see VTASimulator.run for arguments and errors)."""
    return VTASimulator(config, timing).run(program, dram)
