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
from .kernel import CpuTarget, KernelInput, LowerNode, stored_type
from .layout import assign_blocks, layout_name, layout_transform
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
    layout: str = ""  # "NCHW16c -> NCHW": the layout its kernel reads (first input) and writes


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
    blocks = assign_blocks(graph, target.vector_lanes) if (options or ScheduleOptions()).overrides.get(
        "layout", True) else {}
    flow = _LayoutFlow(target)
    kernels = _KernelTable()
    report = []
    t0 = time.time()

    def emit(kernel, node_name, op, inputs, outs, in_blocks, out_block, rule="", candidates=""):
        """Add one call: `inputs` are the node's input values, `in_blocks` the layouts it reads
        them in, `outs` [(env key, stored type)], output 0 stored in `out_block`."""
        n_in = len(kernel.func.params) - len(outs)
        if n_in != len(kernel.args):
            raise CompileError(f"node {node_name} ({op}): kernel has {n_in} input params but "
                               f"{len(kernel.args)} args")
        args = []
        for a in kernel.args:
            if isinstance(a, np.ndarray):
                args.append(("param", param_slot(a)))
            elif inputs[a].is_constant:
                args.append(("param", param_slot(inputs[a].data)))
            else:
                args.append(("value", flow.key(inputs[a], in_blocks[a] if a < len(in_blocks) else 0, emit)))
        name = kernels.add(kernel.func, op)
        flow.calls.append((name, args, outs))
        report.append(LoweredNode(node_name, op, name, kernel.schedule, rule, candidates,
                                  _layouts_text(inputs, in_blocks, outs, out_block)))

    for i, node in enumerate(graph.nodes):
        ln = flow.lower_node(node, blocks)
        choice = select(ln, options)
        kernel = choice.kernel
        built_on_blocks = ln.op != "Conv" and ln.out_block  # the kernel took the stored 5-D types
        in_blocks = ln.blocks if built_on_blocks else kernel.in_blocks
        out_block = ln.out_block if built_on_blocks else kernel.out_block
        outs = [(v.name, stored_type(v.type, out_block if k == 0 else 0)) for k, v in enumerate(node.outputs)]
        emit(kernel, node.name, node.op, node.inputs, outs, in_blocks, out_block, choice.rule.name, choice.explain())
        flow.stored[node.outputs[0].name] = out_block
        if (i + 1) % 25 == 0 or i + 1 == len(graph.nodes):
            _report(progress, f"lowered {i + 1}/{len(graph.nodes)} nodes "
                              f"({len(kernels.funcs)} distinct kernels, {time.time() - t0:.1f}s)")

    for v in graph.outputs:  # constant outputs are passed through as parameters
        if v.is_constant:
            param_slot(v.data)
    out_keys = [None if v.is_constant else flow.key(v, 0, emit) for v in graph.outputs]

    # phase 2: emit main
    bb = relax.BlockBuilder()
    in_vars = [relax.Var(v.name, _rtype(v.type)) for v in graph.inputs]
    p_vars = [relax.Var(f"p{i}", _rtype(TensorType.of(a))) for i, a in enumerate(param_arrays)]
    env = {v.name: var for v, var in zip(graph.inputs, in_vars)}
    with bb.function("main", in_vars + p_vars):
        gvars = {name: bb.add_func(func, name) for name, func in kernels.funcs}
        with bb.dataflow():
            for name, args, outs in flow.calls:
                rargs = [p_vars[x] if kind == "param" else env[x] for kind, x in args]
                out_ty = [_rtype(t) for _, t in outs]
                res = bb.emit(relax.call_tir(gvars[name], rargs, out_ty if len(out_ty) > 1 else out_ty[0]))
                if len(out_ty) == 1:
                    env[outs[0][0]] = res
                else:
                    for k, (key, _) in enumerate(outs):
                        env[key] = bb.emit(relax.TupleGetItem(res, k))
            outs = [p_vars[param_slot(v.data)] if v.is_constant else env[key]
                    for v, key in zip(graph.outputs, out_keys)]
            result = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(result)
    return Lowered(bb.get(), param_arrays, [(v.name, v.type) for v in graph.inputs],
                   [(v.name, v.type) for v in graph.outputs], report)


class _LayoutFlow:
    """Where each run-time value is stored (NCHW or NCHW{b}c) and the calls made so far;
    converts a value on demand with a layout_transform call (once per value and layout)."""

    def __init__(self, target: CpuTarget):
        self.target = target
        self.stored: dict = {}  # value name -> block it is stored in (missing: 0, as typed)
        self.calls: list = []  # [(kernel name, args, [(env key, physical type)])]

    def key(self, v, block: int, emit) -> str:
        """The env key of value `v` stored in `block`, adding a transform call when needed."""
        have = self.stored.get(v.name, 0)
        if have == block:
            return v.name
        key = f"{v.name}@{layout_name(v.type.shape, block)}"
        if key not in self.stored:
            self.stored[key] = block
            ln = LowerNode("LayoutTransform", key, {}, [KernelInput(v.type)], [v.type], self.target)
            kernel = layout_transform(ln, have, block)
            emit(kernel, key, "LayoutTransform", [v], [(key, stored_type(v.type, block))], kernel.in_blocks, block)
        return key

    def lower_node(self, node, blocks: dict) -> LowerNode:
        """The LowerNode of `node` in the layouts chosen: a Conv is told where its inputs are
        stored and the block wanted for its output; an op that runs blocked sees 5-D types."""
        block = blocks.get(node.outputs[0].name, 0)
        if node.op == "Conv":
            return LowerNode.of(node, self.target, tuple(self.stored.get(v.name, 0) for v in node.inputs), block)
        if block:
            inputs = [KernelInput(stored_type(v.type, block)) for v in node.inputs]
            outputs = [stored_type(node.outputs[0].type, block)]
            return LowerNode(node.op, node.name, node.attrs, inputs, outputs, self.target,
                             tuple(block for _ in inputs), block)
        return LowerNode.of(node, self.target)


def _layouts_text(inputs, in_blocks, outs, out_block: int) -> str:
    """"NCHW16c -> NCHW16c": the layout a kernel reads its first run-time input in and writes."""
    first = next((k for k, v in enumerate(inputs) if not v.is_constant), None)
    src = "" if first is None else layout_name(inputs[first].type.shape,
                                               in_blocks[first] if first < len(in_blocks) else 0)
    return f"{src} -> {layout_name(outs[0][1].shape, out_block)}"


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
