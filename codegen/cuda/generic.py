"""Any op on the GPU: the CPU rule's TE compute with the generic thread schedule,
and the data-movement ops whose CPU kernels are hand-written loops (not TE).

The generic rule takes the compute of the op's CPU fallback rule (else the first
CPU rule that applies) built unscheduled (`rules.compute_only`), inlines its
elementwise stages and gives each output element one GPU thread.
"""
from __future__ import annotations

import dataclasses

from ...errors import CompileError
from ...ir import OPS
from ..kernel import Kernel, LowerNode
from ..rules import compute_only, make_kernel, rules_for
from .registry import COMPUTE_TARGET, cuda_rule
from .schedule_gpu import schedule_threads


def cpu_compute(n: LowerNode, accept=lambda r: True) -> Kernel | None:
    """The unscheduled kernel of the first applicable CPU rule of `n.op` (fallback rules first).

    Args:
        n: the node (any target).
        accept: which CPU rules to consider (by Rule).
    Returns:
        the Kernel, or None when no CPU rule applies.
    """
    cpu_node = dataclasses.replace(n, target=COMPUTE_TARGET)
    ordered = sorted((r for r in rules_for(COMPUTE_TARGET).get(n.op, []) if accept(r)), key=lambda r: not r.fallback)
    with compute_only():
        for r in ordered:
            kernel = r.fn(cpu_node)
            if kernel is not None:
                return kernel
    return None


def gpu_schedule(kernel: Kernel, schedule, description: str) -> Kernel:
    """`kernel` (an unscheduled TE PrimFunc) with `schedule(sch)` applied."""
    import tvm

    sch = tvm.s_tir.Schedule(kernel.func)
    schedule(sch)
    return Kernel(sch.mod["main"], kernel.args, description, kernel.extra)


def generic_gpu(n: LowerNode) -> Kernel:
    """Any op: the CPU compute, one thread per output element."""
    kernel = cpu_compute(n)
    if kernel is None:
        raise CompileError(f"node {n.name} ({n.op}): no CPU rule applies, so there is no compute to "
                           f"schedule for cuda (inputs {[str(i.type) for i in n.inputs]})")
    if not _has_blocks(kernel.func):
        raise CompileError(f"node {n.name} ({n.op}): the CPU kernel is hand-written TIR, not a TE "
                           f"compute; the cuda target has no lowering for {n.op} yet")
    return gpu_schedule(kernel, schedule_threads, "gpu generic: one thread per output element")


def _has_blocks(func) -> bool:
    return type(func.body).__name__ == "SBlockRealize"  # te.create_prim_func's root block


def _register_generic():
    from ...ir.registry import _load_ops

    _load_ops()
    cuda_rule(*sorted(OPS), name="gpu-generic", fallback=True)(generic_gpu)


def _movement_kernel(n: LowerNode, build, description: str) -> Kernel:
    xs = [n.placeholder(i) for i in range(len(n.inputs))]
    outs = build(xs)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return make_kernel(xs, outs, schedule_threads, list(range(len(xs))), description)


@cuda_rule("Reshape", name="gpu-reshape")  # the CPU's movement kernels are hand-written TIR
def reshape_copy(n: LowerNode) -> Kernel:
    """A copy into the output shape (row-major order is kept), one thread per element."""
    from tvm import topi

    return _movement_kernel(n, lambda xs: topi.reshape(xs[0], n.outputs[0].shape), "gpu copy")


@cuda_rule("Concat", name="gpu-concat")
def concat_copy(n: LowerNode) -> Kernel:
    """One thread per output element, reading the input its index falls in."""
    from tvm import topi

    axis = n.attrs["axis"] % len(n.outputs[0].shape)
    return _movement_kernel(n, lambda xs: topi.concatenate(xs, axis), "gpu concat")


@cuda_rule("Split", name="gpu-split")
def split_copy(n: LowerNode) -> Kernel:
    """One thread per element of each output, reading at the piece's offset along the axis."""
    from tvm import te

    axis = n.attrs["axis"]
    offsets = [sum(n.attrs["split"][:i]) for i in range(len(n.outputs))]

    def piece(x, shape, offset, k):
        return te.compute(shape, lambda *i: x[i[:axis] + (i[axis] + offset,) + i[axis + 1:]], name=f"piece{k}")
    return _movement_kernel(n, lambda xs: [piece(xs[0], out.shape, o, k) for k, (out, o) in
                                           enumerate(zip(n.outputs, offsets))], "gpu split")


@cuda_rule("Slice", name="gpu-slice")
def slice_copy(n: LowerNode) -> Kernel:
    """out[..., i, ...] = x[..., start + i*step, ...] on each sliced axis (attrs are normalized)."""
    from tvm import te

    first = dict(zip(n.attrs["axes"], zip(n.attrs["starts"], n.attrs["steps"])))

    def source(i):
        return tuple(first[a][0] + v * first[a][1] if a in first else v for a, v in enumerate(i))
    return _movement_kernel(n, lambda xs: te.compute(n.outputs[0].shape, lambda *i: xs[0][source(i)],
                                                     name="slice"), "gpu slice")


@cuda_rule("Expand", name="gpu-expand")
def expand_copy(n: LowerNode) -> Kernel:
    """numpy broadcasting of the input to the output shape."""
    from tvm import te

    from ..elementwise import load_broadcast

    shape = n.outputs[0].shape
    return _movement_kernel(n, lambda xs: te.compute(shape, lambda *i: load_broadcast(xs[0], shape, i),
                                                     name="expand"), "gpu expand")


@cuda_rule("Tile", name="gpu-tile")
def tile_copy(n: LowerNode) -> Kernel:
    """out[i] = x[i mod in_shape] on every axis."""
    from tvm import te

    in_shape = n.inputs[0].type.shape
    return _movement_kernel(n, lambda xs: te.compute(
        n.outputs[0].shape, lambda *i: xs[0][tuple(v % d for v, d in zip(i, in_shape))], name="tile"), "gpu tile")


_register_generic()
