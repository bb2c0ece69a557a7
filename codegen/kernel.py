"""What a lowering rule sees and returns.

A lowering rule turns one IR node into one scheduled TVM PrimFunc. Rules for an
op are tried in order (see codegen/rules.py); a rule returns None when it does
not apply, and the last rule of every op always applies.

    @rule("Relu")
    def relu_injective(n: LowerNode) -> Kernel:
        x = n.placeholder(0)
        y = te.compute(x.shape, lambda *i: te.max(x(*i), 0.0), name="relu")
        return make_kernel([x], [y], schedule_injective(n.target.vector_lanes), [0], "injective")

PrimFunc parameters are the kernel's inputs (`Kernel.args`, in order) followed by
its outputs (one per node output, with exactly the node's output types).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..ir.types import TensorType


@dataclass(frozen=True)
class CpuTarget:
    """An LLVM CPU target: which CPU to tune for and how many cores to use."""

    mcpu: str
    num_cores: int
    vector_lanes: int = 8  # fp32 lanes per SIMD register (8 for AVX2, 16 for AVX-512)
    ghz: float = 2.5  # nominal clock, for the cost model only
    memory_bandwidth: float = 20e9  # bytes/s, for the cost model only

    @property
    def peak_flops(self) -> float:
        """fp32 FLOP/s of all cores: two FMA pipes per core, 2 FLOPs per lane per FMA."""
        return self.num_cores * self.ghz * 1e9 * 2 * 2 * self.vector_lanes

    @staticmethod
    def host() -> "CpuTarget":
        """The machine we are running on."""
        import tvm

        mcpu = tvm.target.codegen.llvm_get_system_cpu()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return CpuTarget(mcpu, cores, 16 if _has_avx512() else 8)

    def tvm_target(self):
        import tvm

        return tvm.target.Target({"kind": "llvm", "mcpu": self.mcpu, "num-cores": self.num_cores})

    def to_json(self) -> dict:
        return {"kind": "llvm", "mcpu": self.mcpu, "num-cores": self.num_cores}


def _has_avx512() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return " avx512f" in f.read()
    except OSError:
        return False


@dataclass
class KernelInput:
    """One node input as a lowering rule sees it."""

    type: TensorType
    data: np.ndarray | None = None  # the constant's value, when the input is a constant

    @property
    def is_constant(self) -> bool:
        return self.data is not None


@dataclass
class LowerNode:
    """A node to lower: op, attributes, input and output types, target."""

    op: str
    name: str
    attrs: dict
    inputs: list  # list[KernelInput]
    outputs: list  # list[TensorType]
    target: CpuTarget

    def placeholder(self, i: int, name: str | None = None):
        """A te.placeholder for node input i."""
        from tvm import te

        t = self.inputs[i].type
        return te.placeholder(t.shape, dtype=t.dtype, name=name or f"in{i}")

    def constant_placeholder(self, array: np.ndarray, name: str):
        """A te.placeholder for a constant made at compile time (packed weights, tables)."""
        from tvm import te

        return te.placeholder(array.shape, dtype=array.dtype.name, name=name)


@dataclass
class Kernel:
    """A scheduled PrimFunc and what to pass it.

    func: the PrimFunc (no global_symbol); params = args then outputs.
    args: per input param, an int (index of the node input) or a numpy array
        (a constant computed at compile time, e.g. pre-packed weights).
    schedule: a short description of the schedule chosen (shown by inspect).
    """

    func: object
    args: list
    schedule: str = ""
    extra: dict = field(default_factory=dict)
