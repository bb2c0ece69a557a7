"""Lowering rules and schedule selection.

For each IR op there is an ordered list of rules (functions LowerNode -> Kernel | None);
a rule returns None when it does not apply, and the last rule of every op always
applies (the fallback). Rules live in the kernel modules listed in KERNEL_MODULES and
register themselves with `@rule("Op", name=..., family=..., efficiency=...)`.

Among the rules that apply to a node, the cheapest by the analytical cost model wins
(`estimate_seconds`: the node's FLOPs at the rule's fraction of peak plus its bytes at
memory bandwidth on the CPU, the slower of the two where the target overlaps them); ties go to the earlier rule. With
`ScheduleOptions(measure=True)` candidates are compiled and timed on this machine
instead (results cached on disk, codegen/measure.py). Overrides switch a family of
rules off (`winograd=off`) or make it win whenever it applies (`strassen=on`).
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Callable

from ..errors import CompileError, NnforgeError
from .kernel import Kernel, LowerNode

KERNEL_MODULES = ("elementwise", "reduce", "movement", "resize", "pool", "norm", "gemm", "gemm_strassen",
                  "conv2d", "conv2d_winograd", "conv2d_im2col", "fused_elementwise", "sparse", "int8", "int8_conv",
                  "int8_depthwise", "conv2d_fused_layer")


@dataclass(frozen=True)
class Rule:
    """One way to lower an op. `efficiency`: expected fraction of the target's peak FLOP rate."""

    op: str
    name: str
    family: str
    efficiency: float
    fn: Callable
    fallback: bool = False  # considered only when no other rule applies
    opt_in: bool = False  # built only when its family is forced on (`family=on`)


RULES: dict[str, list[Rule]] = {}  # the CPU (llvm) rules
TARGET_RULES: dict[str, dict] = {"llvm": RULES}  # target kind -> its rule table (codegen/cuda adds "cuda")
_COMPUTE_ONLY = contextvars.ContextVar("nnforge_compute_only", default=False)


def rule(*ops: str, name: str | None = None, family: str | None = None, efficiency: float = 0.5,
         fallback: bool = False, table: dict | None = None, opt_in: bool = False):
    """Register the decorated function as the next lowering rule for each op in `ops`.

    Args:
        ops: IR op names.
        name: kebab-case rule name (default: the function name).
        family: the name overrides use (`winograd=off`); default: the rule name.
        efficiency: expected fraction of peak FLOP rate, for the cost model.
        fallback: a generic rule, built only when no other rule applies (register it last).
        table: the rule table of another target (default: RULES, the CPU's).
        opt_in: build the rule only when its family is switched on (not yet calibrated).
    """
    def deco(fn):
        rname = name or fn.__name__.strip("_").replace("_", "-")
        for op in ops:
            (RULES if table is None else table).setdefault(op, []).append(
                Rule(op, rname, family or rname, efficiency, fn, fallback, opt_in))
        return fn
    return deco


@dataclass
class ScheduleOptions:
    """How to choose among applicable rules.

    overrides: family -> True (win whenever applicable) / False (never use).
    measure: time candidates on this machine (cached on disk) instead of trusting the model.
    """

    overrides: dict = field(default_factory=dict)
    measure: bool = False

    @staticmethod
    def parse(text: str | None, measure: bool = False) -> "ScheduleOptions":
        """From the CLI form `winograd=off,strassen=on`."""
        overrides = {}
        for item in filter(None, (text or "").split(",")):
            fam, _, val = item.partition("=")
            if val not in ("on", "off"):
                raise NnforgeError(f"--schedule expects FAMILY=on|off, got {item!r}")
            overrides[fam.strip()] = val == "on"
        return ScheduleOptions(overrides, measure)


@dataclass
class Choice:
    """The rule chosen for a node and the candidates considered: (rule, est. s, measured s)."""

    rule: Rule
    kernel: Kernel
    candidates: list

    def explain(self) -> str:
        parts = []
        for r, est, meas in self.candidates:
            mark = "*" if r is self.rule else " "
            t = f"{est * 1e3:.3f}ms est" + (f", {meas * 1e3:.3f}ms measured" if meas is not None else "")
            parts.append(f"{mark}{r.name} ({t})")
        return "; ".join(parts)


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
    if schedule is not None and not _COMPUTE_ONLY.get():
        schedule(sch)
    return Kernel(sch.mod["main"].without_attr("global_symbol"), list(args), description)


@contextlib.contextmanager
def compute_only():
    """Within this context `make_kernel` leaves PrimFuncs unscheduled: another target
    (codegen/cuda) reuses the CPU rules' TE computes and schedules them itself."""
    token = _COMPUTE_ONLY.set(True)
    try:
        yield
    finally:
        _COMPUTE_ONLY.reset(token)


def rules_for(target) -> dict:
    """The rule table of `target` (by its `kind`: "llvm" for CpuTarget)."""
    _load_rules()
    return TARGET_RULES[target.kind]


def check_overrides(options: ScheduleOptions):
    """NnforgeError naming any override family no rule belongs to (a typo would silently do nothing)."""
    _load_rules()
    known = {r.family for table in TARGET_RULES.values() for rs in table.values() for r in rs}
    known.add("layout")  # layout=off: every value NCHW (codegen/layout.py), not a rule family
    unknown = sorted(set(options.overrides) - known)
    if unknown:
        raise NnforgeError(f"unknown schedule family {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def estimate_seconds(n: LowerNode, r: Rule, kernel: Kernel) -> float:
    """Analytical time of `kernel` from its FLOPs and its bytes moved, each taken from
    kernel.extra ("flops", "bytes") when the schedule changes them (Winograd's transformed
    weights, for example), else the node's registry cost; FLOPs run at the rule's efficiency.
    The roofline (the slower of the two) where the target overlaps memory traffic with compute
    (`target.overlaps_memory`), else their sum (see CpuTarget)."""
    from ..ir import get_op

    cost = get_op(n.op).cost([i.type for i in n.inputs], n.outputs, n.attrs)
    flops = kernel.extra.get("flops", cost.flops)
    compute = flops / (r.efficiency * n.target.peak_flops)
    memory = kernel.extra.get("bytes", cost.bytes_read + cost.bytes_written) / n.target.memory_bandwidth
    return max(compute, memory) if n.target.overlaps_memory else compute + memory


def _run_rule(r: Rule, n: LowerNode):
    try:
        return r.fn(n)
    except NnforgeError:
        raise
    except Exception as e:  # a TVM error inside a rule is our bug: say where it happened
        msg = str(e).strip()
        raise CompileError(f"node {n.name} ({n.op}): lowering rule {r.name} failed: "
                           f"{type(e).__name__}: {msg.splitlines()[-1] if msg else ''}") from e


def select(n: LowerNode, options: ScheduleOptions | None = None) -> Choice:
    """Build every applicable rule's kernel for node `n` and choose one (see module doc)."""
    _load_rules()
    from .zero_size import zero_size_tensors  # here: zero_size imports make_kernel from this module

    zero = Rule(n.op, "zero-size", "zero-size", 1.0, zero_size_tensors)
    empty = _run_rule(zero, n)  # a node with empty tensors gets a trivial kernel; op rules never see it
    if empty is not None:
        return Choice(zero, empty, [(zero, 0.0, None)])
    if not rules_for(n.target).get(n.op):
        raise CompileError(f"node {n.name}: no {n.target.kind} lowering for op {n.op}")
    options = options or ScheduleOptions()
    # the generic rules only when nothing else applies: building them for every node wastes compile time
    built = applicable(n, options, fallback=False) or applicable(n, options, fallback=True)
    if not built:
        raise CompileError(f"node {n.name} ({n.op}): no lowering rule applies "
                           f"(inputs {[str(i.type) for i in n.inputs]}, attrs {n.attrs}"
                           f"{', overrides ' + str(options.overrides) if options.overrides else ''})")
    forced = [(r, k) for r, k in built if options.overrides.get(r.family) is True]
    if forced:
        built = forced
    candidates = [(r, k, estimate_seconds(n, r, k), None) for r, k in built]
    if options.measure and len(candidates) > 1:
        from .measure import measure_seconds

        candidates = [(r, k, est, measure_seconds(n, r, k)) for r, k, est, _ in candidates]
    best = min(range(len(candidates)),
               key=lambda i: (candidates[i][3] if candidates[i][3] is not None else candidates[i][2], i))
    r, k = candidates[best][0], candidates[best][1]
    return Choice(r, k, [(c[0], c[2], c[3]) for c in candidates])


def applicable(n: LowerNode, options: ScheduleOptions | None = None, fallback: bool | None = None) -> list:
    """[(rule, kernel)] of every rule of `n.op` that applies and is not switched off;
    `fallback` True/False keeps only the generic / only the specific rules, None both."""
    _load_rules()
    options = options or ScheduleOptions()
    rules = [r for r in rules_for(n.target).get(n.op, []) if options.overrides.get(r.family, True)
             and (fallback is None or r.fallback == fallback)
             and (not r.opt_in or options.overrides.get(r.family) is True)]
    return [(r, k) for r in rules for k in [_run_rule(r, n)] if k is not None]


def lower_node(n: LowerNode, options: ScheduleOptions | None = None) -> Kernel:
    """The chosen rule's Kernel for node `n`; CompileError naming the node when none applies."""
    return select(n, options).kernel


def _load_rules():
    # every module, even when RULES is not empty: importing one kernel module directly
    # (a test does) must not hide the others' rules
    import importlib

    for name in KERNEL_MODULES:
        importlib.import_module(f"{__package__}.{name}")
