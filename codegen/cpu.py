"""Lower an ir.Graph to one TVM module for an LLVM CPU target.

Every node becomes one scheduled PrimFunc (chosen by codegen/rules.py) called with
Relax `call_tir` from a generated `main(inputs..., params...)`. Structurally equal
PrimFuncs are emitted once. Weights (graph constants and constants made by the
kernels, e.g. packed weights) are passed to `main` as parameters and saved beside
the library, not baked into it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import CompileError
from ..ir.types import TensorType
from .kernel import CpuTarget, KernelInput, LowerNode
from .rules import ScheduleOptions, check_overrides, select


@dataclass
class LoweredNode:
    """What inspect shows for one node: the kernel it got and the schedule chosen."""

    node: str
    op: str
    kernel: str
    schedule: str
    rule: str = ""
    candidates: str = ""  # the rules considered, with estimated (and measured) times


@dataclass
class Lowered:
    """Result of `lower`: the Relax IRModule plus everything needed to call it."""

    mod: object
    params: list  # numpy arrays, in main's parameter order after the inputs
    inputs: list  # [(name, TensorType)]
    outputs: list  # [(name, TensorType)]
    nodes: list = field(default_factory=list)  # [LoweredNode]


def _report(progress, msg):
    if progress is not None:
        progress(msg)


def lower(graph, target: CpuTarget, progress=None, options: ScheduleOptions | None = None) -> Lowered:
    """Lower every node of `graph` to a kernel and emit the calling module.

    Args:
        graph: a verified ir.Graph.
        target: the CPU target.
        progress: optional callable taking a status string (long compiles report per node).
        options: schedule selection options (overrides, measurement).
    Returns:
        a Lowered.
    """
    from tvm import relax

    if options is not None:
        check_overrides(options)
    param_arrays: list[np.ndarray] = []
    param_index: dict[int, int] = {}  # id(array) -> param slot, so shared constants pass once

    def param_slot(array: np.ndarray) -> int:
        if id(array) not in param_index:
            param_index[id(array)] = len(param_arrays)
            param_arrays.append(array)
        return param_index[id(array)]

    # phase 1: pick a kernel per node (params must be known before main's signature)
    calls, report = [], []
    kernels = _KernelTable()
    t0 = time.time()
    for i, node in enumerate(graph.nodes):
        ln = LowerNode(node.op, node.name, node.attrs,
                       [KernelInput(v.type, v.data) for v in node.inputs],
                       [v.type for v in node.outputs], target)
        choice = select(ln, options)
        kernel = choice.kernel
        n_in = len(kernel.func.params) - len(node.outputs)
        if n_in != len(kernel.args):
            raise CompileError(f"node {node.name} ({node.op}): kernel has {n_in} input params but "
                               f"{len(kernel.args)} args")
        args = []
        for a in kernel.args:
            if isinstance(a, np.ndarray):
                args.append(("param", param_slot(a)))
            else:
                v = node.inputs[a]
                args.append(("param", param_slot(v.data)) if v.is_constant else ("value", v.name))
        name = kernels.add(kernel.func, node.op)
        calls.append((node, name, args))
        report.append(LoweredNode(node.name, node.op, name, kernel.schedule, choice.rule.name,
                                  choice.explain()))
        if (i + 1) % 25 == 0 or i + 1 == len(graph.nodes):
            _report(progress, f"lowered {i + 1}/{len(graph.nodes)} nodes "
                              f"({len(kernels.funcs)} distinct kernels, {time.time() - t0:.1f}s)")

    for v in graph.outputs:  # constant outputs are passed through as parameters
        if v.is_constant:
            param_slot(v.data)

    # phase 2: emit main
    bb = relax.BlockBuilder()
    in_vars = [relax.Var(v.name, _rtype(v.type)) for v in graph.inputs]
    p_vars = [relax.Var(f"p{i}", _rtype(TensorType.of(a))) for i, a in enumerate(param_arrays)]
    env = {v.name: var for v, var in zip(graph.inputs, in_vars)}
    with bb.function("main", in_vars + p_vars):
        gvars = {name: bb.add_func(func, name) for name, func in kernels.funcs}
        with bb.dataflow():
            for node, name, args in calls:
                rargs = [p_vars[x] if kind == "param" else env[x] for kind, x in args]
                out_ty = [_rtype(v.type) for v in node.outputs]
                res = bb.emit(relax.call_tir(gvars[name], rargs, out_ty if len(out_ty) > 1 else out_ty[0]))
                if len(out_ty) == 1:
                    env[node.outputs[0].name] = res
                else:
                    for k, v in enumerate(node.outputs):
                        env[v.name] = bb.emit(relax.TupleGetItem(res, k))
            outs = [p_vars[param_slot(v.data)] if v.is_constant else env[v.name] for v in graph.outputs]
            result = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(result)
    return Lowered(bb.get(), param_arrays, [(v.name, v.type) for v in graph.inputs],
                   [(v.name, v.type) for v in graph.outputs], report)


def _rtype(t: TensorType):
    from tvm import relax

    return relax.TensorType(t.shape, t.dtype)


class _KernelTable:
    """Distinct PrimFuncs by structural equality, so identical layers share one kernel."""

    def __init__(self):
        self.funcs: list = []  # [(name, func)]
        self._by_hash: dict = {}

    def add(self, func, op: str) -> str:
        import tvm_ffi

        bucket = self._by_hash.setdefault(tvm_ffi.structural_hash(func), [])
        for other, name in bucket:
            if tvm_ffi.structural_equal(other, func):
                return name
        name = f"{op.lower()}_{len(self.funcs)}"
        bucket.append((func, name))
        self.funcs.append((name, func))
        return name


def _vm_pipeline():
    """TVM's default Relax build pipeline minus the passes that assume TVM-generated kernels:
    our module has only call_tir to scheduled PrimFuncs (some written as plain TIR, which
    RewriteDataflowReshape's pattern check rejects), so nothing needs legalizing or dispatching."""
    import tvm
    from tvm.relax import transform as T

    return tvm.transform.Sequential([
        T.ToNonDataflow(), T.RemovePurityChecking(), T.CallTIRRewrite(), T.StaticPlanBlockMemory(),
        T.LowerAllocTensor(), T.KillAfterLastUse(), T.LowerRuntimeBuiltin(), T.ComputePrimValue(),
        T.VMShapeLower(), T.AttachGlobalSymbol()])


def build(lowered: Lowered, target: CpuTarget, progress=None):
    """Compile a Lowered module to a tvm Executable (LLVM codegen of every kernel)."""
    import tvm

    t0 = time.time()
    _report(progress, "compiling kernels with LLVM ...")
    try:
        ex = tvm.compile(lowered.mod, target=target.tvm_target(), relax_pipeline=_vm_pipeline())
    except Exception as e:
        raise CompileError(f"TVM failed to build the module: {type(e).__name__}: "
                           f"{str(e).strip().splitlines()[-1] if str(e).strip() else ''}") from e
    _report(progress, f"built in {time.time() - t0:.1f}s")
    return ex
