"""Lowering rules: for each IR op, an ordered list of functions LowerNode -> Kernel | None.

The first rule that returns a Kernel wins; the last rule of every op must always apply
(the fallback). Rules live in the kernel modules listed in KERNEL_MODULES
and register themselves with `@rule("Op", ...)`.
"""
from __future__ import annotations

from typing import Callable

from ..errors import CompileError, NnforgeError
from .kernel import Kernel, LowerNode

RULES: dict[str, list[Callable]] = {}
KERNEL_MODULES = ("elementwise", "reduce", "movement", "pool", "norm", "gemm", "conv2d")


def rule(*ops: str):
    """Register the decorated function as the next lowering rule for each op in `ops`."""
    def deco(fn):
        for op in ops:
            RULES.setdefault(op, []).append(fn)
        return fn
    return deco


def make_kernel(inputs, outputs, schedule, args, description: str) -> Kernel:
    """Create a PrimFunc from TE tensors and schedule it.

    Args:
        inputs: te placeholders, one per kernel argument (same order as `args`).
        outputs: te tensors, one per node output.
        schedule: `schedule(sch: tvm.s_tir.Schedule) -> None`, or None for none.
        args: see Kernel.args.
        description: the schedule's one-line description.
    Returns:
        a Kernel.
    """
    import tvm
    from tvm import te

    func = te.create_prim_func(list(inputs) + list(outputs))
    sch = tvm.s_tir.Schedule(func)
    if schedule is not None:
        schedule(sch)
    return Kernel(sch.mod["main"].without_attr("global_symbol"), list(args), description)


def lower_node(n: LowerNode) -> Kernel:
    """The first applicable rule's Kernel for node `n`; CompileError naming the node otherwise."""
    _load_rules()
    rules = RULES.get(n.op)
    if not rules:
        raise CompileError(f"node {n.name}: no CPU lowering for op {n.op}")
    for fn in rules:
        try:
            kernel = fn(n)
        except NnforgeError:
            raise
        except Exception as e:  # a TVM error inside a rule is our bug: say where it happened
            raise CompileError(f"node {n.name} ({n.op}): lowering rule {fn.__name__} failed: "
                               f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}") from e
        if kernel is not None:
            return kernel
    raise CompileError(f"node {n.name} ({n.op}): no lowering rule applies "
                       f"(inputs {[str(i.type) for i in n.inputs]}, attrs {n.attrs})")


def _load_rules():
    if not RULES:
        import importlib

        for name in KERNEL_MODULES:
            importlib.import_module(f"{__package__}.{name}")
