"""Activation memory of a lowered module: what each intermediate tensor would take with a
buffer of its own, what TVM's liveness-based plan (relax StaticPlanBlockMemory, part of
the build pipeline in cpu.py) actually allocates, and the liveness lower bound.

StaticPlanBlockMemory already reuses storage: after a tensor's last use its storage goes
back to a pool and a later tensor of a compatible size takes it. This module measures that
plan on the same Relax program the build compiles; it does not change it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ActivationMemory:
    """Bytes of the tensors the kernels write (graph inputs and weights excluded).

    unplanned: every tensor in its own buffer (no reuse).
    planned: what the built module allocates: TVM's storage blocks plus the outputs.
    lower_bound: the most bytes live at once in this call order (no plan can beat it).
    tensors: how many tensors the kernels write (= kernels launched, one output each).
    """

    unplanned: int
    planned: int
    lower_bound: int
    tensors: int


def _bindings(func):
    return [b for block in func.body.blocks for b in block.bindings]


def _op_name(value) -> str:
    from tvm import relax

    return value.op.name if isinstance(value, relax.Call) and hasattr(value.op, "name") else ""


def _tensor_bytes(ty) -> int:
    shape = [int(d) for d in ty.shape.values]
    return int(np.prod(shape)) * np.dtype(str(ty.dtype)).itemsize


def _vars_in(expr) -> list:
    from tvm import relax

    found = []
    relax.analysis.post_order_visit(expr, lambda e: found.append(e) if isinstance(e, relax.Var) else None)
    return found


def _liveness(func) -> tuple:
    """(sizes of the allocated tensors, the most bytes live at once) of a function whose
    call_tir calls have been rewritten to explicit allocations (CallTIRRewrite)."""
    from tvm import relax

    bindings = _bindings(func)
    root: dict = {}  # var -> the allocation it aliases
    born, last, size = {}, {}, {}
    for i, b in enumerate(bindings):
        if _op_name(b.value) == "relax.builtin.alloc_tensor":
            root[b.var] = b.var
            born[b.var], last[b.var], size[b.var] = i, i, _tensor_bytes(b.var.ty)
            continue
        if isinstance(b.value, relax.Var) and b.value in root:  # `lv = alloc`
            root[b.var] = root[b.value]
        for v in _vars_in(b.value):
            if v in root:
                last[root[v]] = i
    for v in _vars_in(func.body.body):  # returned tensors live to the end
        if v in root:
            last[root[v]] = len(bindings)
    peak = max((sum(size[t] for t in size if born[t] <= i <= last[t]) for i in range(len(bindings) + 1)),
               default=0)
    return list(size.values()), peak


def activation_memory(mod) -> ActivationMemory:
    """Measure the activation memory of a lowered Relax module (codegen.cpu.Lowered.mod).

    Args:
        mod: the IRModule with `main` calling the kernels through call_tir.
    Returns:
        ActivationMemory: no reuse, TVM's static plan, and the liveness lower bound.
    """
    import tvm
    from tvm.relax import transform as T

    explicit = tvm.transform.Sequential([T.ToNonDataflow(), T.RemovePurityChecking(), T.CallTIRRewrite()])(mod)
    sizes, peak = _liveness(explicit["main"])
    planned = 0
    for b in _bindings(T.StaticPlanBlockMemory()(explicit)["main"]):
        name = _op_name(b.value)
        if name == "relax.memory.alloc_storage":
            planned += int(b.value.args[0].values[0])  # storage size in bytes
        elif name == "relax.builtin.alloc_tensor":  # left unplanned: the outputs
            planned += _tensor_bytes(b.var.ty)
    return ActivationMemory(sum(sizes), planned, peak, len(sizes))
