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
from typing import ClassVar

import numpy as np

from ..ir.types import TensorType


@dataclass(frozen=True)
class CpuTarget:
    """An LLVM CPU target: which CPU to tune for and how many cores to use."""

    kind: ClassVar[str] = "llvm"  # selects the rule table (codegen/rules.py TARGET_RULES)
    # The cost model adds compute and memory time: our CPU kernels do not prefetch the next weight
    # block while computing, so weight streaming adds to the FMAs. The max (roofline) picked
    # Winograd F(4x4) over F(2x2) on 13x13/14x14 layers and F(2x2) over direct on ResNet-50's 7x7
    # ones, streaming transformed weights 36/9 or 16/9 x the weights' size; with the sum, whole
    # models ran 5-12% faster (ResNet-50, SqueezeNet, Inception-v1/v2, VGG-19; interleaved A/B).
    overlaps_memory: ClassVar[bool] = False
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
    # NCHW{b}c layouts (codegen/layout.py): for a Conv, per input the block it is stored in (0 or
    # missing: as its type says) and the block wanted for output 0; an op that runs blocked
    # (layout.runs_blocked) gets its 5-D types instead, and these say that they are blocked
    blocks: tuple = ()
    out_block: int = 0

    @staticmethod
    def of(node, target, blocks: tuple = (), out_block: int = 0) -> "LowerNode":
        """The LowerNode of an ir.Node: its op, attributes, input types (with constants' data) and
        output types."""
        return LowerNode(node.op, node.name, node.attrs, [KernelInput(v.type, v.data) for v in node.inputs],
                         [v.type for v in node.outputs], target, blocks, out_block)

    def placeholder(self, i: int, name: str | None = None):
        """A te.placeholder for node input i."""
        from tvm import te

        t = self.inputs[i].type
        return te.placeholder(t.shape, dtype=t.dtype, name=name or f"in{i}")

    def input_block(self, i: int) -> int:
        """The NCHW{b}c block node input i is stored in (0: as its type says)."""
        return self.blocks[i] if i < len(self.blocks) else 0

    def reader(self, i: int, name: str | None = None):
        """Node input i as (te.placeholder as stored, read(n, c, h, w) -> element): the
        placeholder is [N, C/b, H, W, b] when the input is stored blocked (see `blocks`)."""
        from tvm import te

        b = self.input_block(i)
        if not b:
            ph = self.placeholder(i, name)
            return ph, lambda *idx: ph[idx]
        t = self.inputs[i].type
        ph = te.placeholder(blocked_shape(t.shape, b), dtype=t.dtype, name=name or f"in{i}")
        return ph, lambda n, c, h, w: ph[n, c // b, h, w, c % b]

    def constant_placeholder(self, array: np.ndarray, name: str):
        """A te.placeholder for a constant made at compile time (packed weights, tables)."""
        from tvm import te

        return te.placeholder(array.shape, dtype=array.dtype.name, name=name)


def blocked_shape(shape, block: int) -> tuple:
    """NCHW shape -> NCHW{block}c [N, C/block, H, W, block] (the channels must divide)."""
    n, c, h, w = shape
    return (n, c // block, h, w, block)


def stored_type(t: TensorType, block: int) -> TensorType:
    """The type of a tensor of type `t` stored in NCHW{block}c (`t` itself for block 0)."""
    return TensorType(t.dtype, blocked_shape(t.shape, block)) if block else t


@dataclass
class Kernel:
    """A scheduled PrimFunc and what to pass it.

    func: the PrimFunc (no global_symbol); params = args then outputs.
    args: per input param, an int (index of the node input) or a numpy array
        (a constant computed at compile time, e.g. pre-packed weights).
    in_blocks, out_block: the layouts it reads and writes when a rule honoured
        LowerNode.blocks/out_block (cpu.py inserts layout transforms for the rest).
    schedule: a short description of the schedule chosen (shown by inspect).
    """

    func: object
    args: list
    schedule: str = ""
    extra: dict = field(default_factory=dict)
    in_blocks: tuple = ()  # per node input, the NCHW{b}c block the kernel reads it in (0: as typed)
    out_block: int = 0  # the block the kernel writes output 0 in (0: as typed)

    def param_types(self, n: LowerNode) -> tuple:
        """(types of the node inputs it reads, types of its outputs), as the PrimFunc takes them."""
        ins = [stored_type(i.type, self.in_blocks[a] if a < len(self.in_blocks) else 0)
               for a, i in enumerate(n.inputs)]
        return ins, [stored_type(t, self.out_block if k == 0 else 0) for k, t in enumerate(n.outputs)]
