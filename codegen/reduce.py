"""Lowering rules for ReduceMean/Sum/Max/Min/Prod over any axes.

A reduction is two stages: `acc` (te reduction in an accumulator dtype: float32 for
float16, int64 for integers so that sums wrap like numpy's) and `finish` (Mean's
division, the cast back to the output dtype).

Loop order follows the input's memory order: the loops of reduced axes sit between the
kept axes, so the innermost loop always walks contiguous memory. Kept axes after the last
reduced one are vectorized (accumulating whole rows at a time); kept axes before the first
are parallel; when there are few of those, the vectorized kept axes are split among
the cores instead. Reducing everything into one value runs on one core (an rfactor into
per-core partial sums would parallelize it; not done yet).
"""
from __future__ import annotations

import math

import numpy as np
from tvm import te

from .elementwise import const, nan_max, nan_min
from .kernel import LowerNode
from .rules import make_kernel, rule
from .schedule_common import (MIN_PARALLEL_ROWS, PARALLEL_GRAIN, vector_width, lanes_for,
                              parallel_vectorize)


def _extremes(dtype: str):
    if dtype.startswith("float"):
        return -math.inf, math.inf
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


# op -> (combine, identity(acc dtype))
_REDUCERS = {
    "ReduceSum": (lambda a, b: a + b, lambda d: 0),
    "ReduceMean": (lambda a, b: a + b, lambda d: 0),
    "ReduceProd": (lambda a, b: a * b, lambda d: 1),
    "ReduceMax": (nan_max, lambda d: _extremes(d)[0]),
    "ReduceMin": (nan_min, lambda d: _extremes(d)[1]),
}


def accumulator_dtype(op: str, dtype: str) -> str:
    """float16 -> float32; integers -> int64/uint64 (a wrapping sum then casts back exactly
    like numpy's), integer Mean in float64 (numpy's mean, truncated by the final cast);
    bool (Max/Min only) -> uint8, where max is any and min is all."""
    if dtype == "float16":
        return "float32"
    if dtype == "bool":
        return "uint8"
    if dtype.startswith(("int", "uint")):
        if op == "ReduceMean":
            return "float64"
        return "uint64" if dtype.startswith("uint") else "int64"
    return dtype


def reduction_compute(x, axes, keepdims: int, op: str, out_dtype: str):
    """The `acc` and `finish` te stages of a reduction of tensor x.

    Args:
        x: te tensor.
        axes: sorted reduced axes.
        keepdims: keep reduced axes as size 1.
        op: a key of _REDUCERS.
        out_dtype: the output dtype.
    Returns:
        the output te tensor.
    """
    shape = [int(d) for d in x.shape]
    acc_dtype = accumulator_dtype(op, str(x.dtype))
    combine, identity = _REDUCERS[op]
    reducer = te.comm_reducer(combine, lambda t: const(identity(acc_dtype), t), name=op)
    raxes = [te.reduce_axis((0, shape[a]), name=f"r{a}") for a in axes]
    kept = [a for a in range(len(shape)) if a not in axes]
    out_shape = [1 if a in axes else d for a, d in enumerate(shape)] if keepdims else \
        [shape[a] for a in kept]

    def x_index(out_index):
        by_axis = dict(zip(axes, raxes))
        by_axis.update(zip(kept, [out_index[a] for a in kept] if keepdims else out_index))
        return [by_axis[a] for a in range(len(shape))]

    acc = te.compute(out_shape, lambda *i: reducer(x[tuple(x_index(i))].astype(acc_dtype), axis=raxes)
                     if raxes else x[tuple(x_index(i))].astype(acc_dtype), name="acc")
    count = math.prod(shape[a] for a in axes)
    if op == "ReduceMean":
        return te.compute(out_shape, lambda *i: (acc[i] / const(count, acc_dtype)).astype(out_dtype),
                          name="finish")
    return te.compute(out_shape, lambda *i: acc[i].astype(out_dtype), name="finish")


def schedule_reduce(sch, block, loop_axes, lanes: int):
    """Schedule a reduction block whose loops (spatial first, then reduction) each walk
    one input axis, `loop_axes[k]` being loop k's input axis.

    Args:
        sch: the schedule.
        block: the reduction block.
        loop_axes: input axis per loop.
        lanes: SIMD lanes of the accumulator dtype.
    """
    loops = sch.get_loops(block)
    n_spatial = len(loops) - sum(1 for iv in sch.get(block).iter_vars if int(iv.iter_type) != 0)
    extents = [int(sch.get(l).extent) for l in loops]
    # unit loops must not split the kept axes into outer and inner: spatial ones go first,
    # reduction ones join the first real reduction loop (decompose_reduction needs them inside)
    is_reduce = [k >= n_spatial for k in range(len(loops))]
    real = sorted((k for k in range(len(loops)) if extents[k] > 1), key=lambda k: (loop_axes[k], is_reduce[k]))
    unit_reduce = [k for k in range(len(loops)) if extents[k] == 1 and is_reduce[k]]
    at = next((p for p, k in enumerate(real) if is_reduce[k]), len(real))
    order = [k for k in range(len(loops)) if extents[k] == 1 and not is_reduce[k]] + \
        real[:at] + unit_reduce + real[at:]
    reduce_positions = [p for p, k in enumerate(order) if is_reduce[k]]
    first, last = reduce_positions[0], reduce_positions[-1]
    outer = [loops[k] for k in order[:first] if extents[k] > 1]
    inner = [loops[k] for k in order[last + 1:] if extents[k] > 1]
    reduces = [loops[k] for k in order[first:last + 1]]
    sch.reorder(*outer, *reduces, *inner)
    rows = math.prod(int(sch.get(l).extent) for l in outer)
    inner_len = math.prod(int(sch.get(l).extent) for l in inner)
    if inner:
        # a vector must not straddle two rows of the innermost loop (TVM then gathers)
        width = vector_width(int(sch.get(inner[-1]).extent), lanes)
        row = sch.fuse(*inner) if len(inner) > 1 else inner[0]
        if rows < MIN_PARALLEL_ROWS and inner_len >= 4 * MIN_PARALLEL_ROWS:
            # few outer rows: give each core a slice of the kept inner axes instead
            part, row = sch.split(row, [MIN_PARALLEL_ROWS, None])
            sch.reorder(part, *reduces)
            outer.append(part)
            rows *= MIN_PARALLEL_ROWS
            slice_len = -(-inner_len // MIN_PARALLEL_ROWS)
            while width and (inner_len % MIN_PARALLEL_ROWS or slice_len % width):
                width = width // 2 if width > 4 else 0
        if width:
            _, vector = sch.split(row, [None, width])
            sch.vectorize(vector)
    if outer and rows * inner_len * math.prod(int(sch.get(r).extent) for r in reduces) >= PARALLEL_GRAIN:
        sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
    sch.decompose_reduction(block, reduces[0])


def _lower_reduce(n: LowerNode):
    x = n.placeholder(0)
    axes, keepdims = list(n.attrs["axes"]), n.attrs["keepdims"]
    y = reduction_compute(x, axes, keepdims, n.op, n.outputs[0].dtype)
    rank = len(x.shape)
    kept = [a for a in range(rank) if a not in axes]
    loop_axes = (list(range(rank)) if keepdims else kept) + axes
    acc_dtype = accumulator_dtype(n.op, n.inputs[0].type.dtype)
    lanes = lanes_for(n.target, acc_dtype)

    def schedule(sch):
        acc = sch.get_sblock("acc")
        if axes:
            schedule_reduce(sch, acc, loop_axes, lanes)
        else:
            parallel_vectorize(sch, acc, lanes)
        parallel_vectorize(sch, sch.get_sblock("finish"), lanes_for(n.target, n.outputs[0].dtype))

    return make_kernel([x], [y], schedule, [0], "reduction in memory order: parallel outer, "
                       "vectorized inner kept axes")


for _op in _REDUCERS:
    rule(_op)(_lower_reduce)
