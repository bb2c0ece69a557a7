"""Nodes with zero-size tensors, for every op: the rule `rules.select` tries before the op's own.

A zero-size output needs no computation, and a zero-size input carries no data. So when
every output is empty the kernel writes nothing, and when every run-time input is empty
the outputs are constants (an empty reduction gives its identity, an empty K gives
zeros): the op's registry reference, which defines its semantics, computes them once at
compile time and the kernel copies them out. The op's own rules never see such nodes (their
schedules assume non-empty loops); other nodes (some run-time inputs empty, some not) go
on to them as usual.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import UnsupportedError
from ..ir import get_op
from .kernel import Kernel, LowerNode
from .rules import make_kernel
from .schedule_common import lanes_for, schedule_injective


def _reference_outputs(n: LowerNode) -> list:
    """The node's outputs when its run-time inputs are all empty (constant inputs as given)."""
    arrays = [i.data if i.is_constant else np.empty(i.type.shape, i.type.dtype) for i in n.inputs]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # numpy warns on the mean of an empty slice (NaN, as ONNX)
        try:
            values = get_op(n.op).run(arrays, n.attrs)
        except ValueError as e:  # e.g. the max of nothing in an op with no identity
            raise UnsupportedError(f"node {n.name} ({n.op}): no result is defined for empty inputs "
                                   f"{[str(i.type) for i in n.inputs]}: {e}") from None
    return [np.asarray(v).astype(t.dtype, order="C").reshape(t.shape) for v, t in zip(values, n.outputs)]


def _copy_of(tensor):
    return lambda *i: tensor(*i)


def zero_size_tensors(n: LowerNode) -> Kernel | None:
    """A trivial kernel for a node whose outputs are all empty or whose run-time inputs are
    all empty (at least one tensor being empty); None for every other node."""
    from tvm import te

    outputs_empty = all(t.numel == 0 for t in n.outputs)
    runtime = [i.type for i in n.inputs if not i.is_constant]
    inputs_empty = any(i.type.numel == 0 for i in n.inputs) and all(t.numel == 0 for t in runtime)
    if not (outputs_empty or inputs_empty):
        return None
    values = [None] * len(n.outputs) if outputs_empty else _reference_outputs(n)
    params, args, outs = [], [], []
    for k, (t, value) in enumerate(zip(n.outputs, values)):
        if t.numel == 0:  # an output parameter that nothing writes
            outs.append(te.placeholder(t.shape, t.dtype, name=f"out{k}"))
            continue
        params.append(n.constant_placeholder(value, f"value{k}"))
        args.append(value)
        outs.append(te.compute(t.shape, _copy_of(params[-1]), name=f"out{k}"))
    schedule = schedule_injective(lanes_for(n.target, *(t.dtype for t in n.outputs))) if params else None
    return make_kernel(params, outs, schedule, args,
                       "zero-size output: nothing to compute" if outputs_empty
                       else "zero-size inputs: constant output computed at compile time")
