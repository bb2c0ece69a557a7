"""The Resize kernel.

Resize is separable: along each resized axis every output position reads a few clamped
input positions with fixed weights. Those depend only on static shapes and attributes, so
they come from the registry's own tables (ir/ops/resize.py `axis_taps`, onnx.reference's
algorithm, in float64) and are passed to the kernel as constants.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.ops.resize import axis_taps, resized_axes
from .kernel import Kernel, LowerNode
from .rules import make_kernel, rule
from .schedule_common import lanes_for, schedule_injective


def _from_accumulator(value, dtype: str):
    """Cast an interpolated value to the output dtype; integers round half to even and
    saturate, as the reference does."""
    from tvm import tirx

    if not np.issubdtype(np.dtype(dtype), np.integer):
        return value.astype(dtype)
    info = np.iinfo(dtype)
    bounded = tirx.max(tirx.min(tirx.nearbyint(value), float(info.max)), float(info.min))
    return bounded.astype(dtype)


@dataclass
class _AxisTables:
    axis: int
    positions: object  # te placeholder [out, taps] of input positions
    weights: object  # [out, taps] weights, None for nearest (one tap)
    extrapolate: object  # [out] int8 mask (tf_crop_and_resize only) or None


@rule("Resize")
def resize_compute(n: LowerNode) -> Kernel:
    """Direct TE compute: the sum over the tap combinations of the resized axes of
    weight products times a gathered input element (nearest: one tap, a pure gather)."""
    from tvm import te, tirx

    x = n.placeholder(0)
    dtype = n.inputs[0].type.dtype
    acc = "float32" if dtype in ("float16", "float32") else "float64"
    in_shape, out_shape = n.inputs[0].type.shape, n.outputs[0].shape
    params, args, axes = [x], [0], []

    def table(array, name):
        params.append(n.constant_placeholder(array, name))
        args.append(array)
        return params[-1]

    for a in resized_axes(n.attrs, in_shape, out_shape):
        positions, weights, extrapolated = axis_taps(n.attrs, a, len(in_shape), in_shape[a], out_shape[a])
        if n.attrs["mode"] == "nearest":  # one-hot weight rows: keep the chosen position
            chosen = weights.argmax(1)
            positions = positions[np.arange(len(chosen)), chosen][:, None]
            # a chosen position outside the input keeps weight 0 under exclude_outside
            weights = weights.max(1, keepdims=True) if n.attrs["exclude_outside"] else None
        axes.append(_AxisTables(
            a, table(positions.astype(np.int32), f"positions{a}"),
            None if weights is None else table(weights.astype(acc), f"weights{a}"),
            None if extrapolated is None else table(extrapolated.astype(np.int8), f"extrapolate{a}")))

    def fn(*o):
        terms = [(list(o), [])]  # (input index, weights) of every tap combination
        for t in axes:
            taps = int(t.positions.shape[1])
            terms = [(src[:t.axis] + [t.positions[o[t.axis], k]] + src[t.axis + 1:],
                      w + ([t.weights[o[t.axis], k]] if t.weights is not None else []))
                     for src, w in terms for k in range(taps)]
        if len(terms) == 1 and not terms[0][1]:  # nearest: a pure gather, exact in any dtype
            value = x(*terms[0][0])
        else:
            value = None
            for src, weights in terms:
                term = x(*src).astype(acc)
                for w in weights:
                    term = term * w
                value = term if value is None else value + term
            value = _from_accumulator(value, dtype)
        masks = [t.extrapolate[o[t.axis]] != 0 for t in axes if t.extrapolate is not None]
        if masks:
            fill = _from_accumulator(tirx.const(n.attrs["extrapolation_value"], acc), dtype)
            value = te.if_then_else(tirx.any(*masks), fill, value)
        return value

    y = te.compute(out_shape, fn, name="resize")
    return make_kernel(params, [y], schedule_injective(lanes_for(n.target, dtype)), args,
                       f"injective {n.attrs['mode']} resize")
