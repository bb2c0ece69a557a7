"""Lowering rules for normalizations: BatchNormalization (inference), LRN,
LayerNormalization, Softmax and LogSoftmax.

Each kernel is a few te stages: keepdims reductions (max, sums; accumulated in float32
for float16 inputs) and an elementwise output that reads them. Elementwise helper stages
are inlined; each reduction gets `schedule_reduce` (memory-order loops: parallel outer,
vectorized inner kept axes) and the output `parallel_vectorize`.
"""
from __future__ import annotations

import numpy as np
from tvm import te, tirx

from .elementwise import const, exp, load_broadcast, widen
from .kernel import LowerNode
from .reduce import reduction_compute, schedule_reduce
from .rules import make_kernel, rule
from .schedule_common import inline_spatial_producers, lanes_for, parallel_vectorize


def schedule_norm(loop_axes, lanes: int):
    """A schedule function: inline helper stages, then `schedule_reduce` every reduction block
    (whose loops walk input axes `loop_axes`) and `parallel_vectorize` the others."""
    def apply(sch):
        inline_spatial_producers(sch)
        for block in sch.get_child_blocks(sch.get_sblock("root")):
            if any(int(iv.iter_type) != 0 for iv in sch.get(block).iter_vars):
                schedule_reduce(sch, block, loop_axes, lanes)
            else:
                parallel_vectorize(sch, block, lanes)
    return apply


def _widened(x):
    """x as a float32 stage when it is float16 (inlined by the schedule)."""
    if str(x.dtype) != "float16":
        return x
    return te.compute(x.shape, lambda *i: widen(x[i]), name="widen")


def _keepdims_reduce(t, op: str, axes):
    return reduction_compute(t, list(axes), 1, op, str(t.dtype))


def _norm_kernel(n: LowerNode, inputs, y, axes, description: str):
    rank = n.inputs[0].type.rank
    lanes = lanes_for(n.target, "float32", n.outputs[0].dtype)
    return make_kernel(inputs, [y], schedule_norm(list(range(rank)) + list(axes), lanes),
                       list(range(len(inputs))), description)


# -- BatchNormalization -------------------------------------------------------------------
def _batchnorm_output(x, scale, shift, out_dtype: str):
    """y = x * scale[c] + shift[c] (channel axis 1), computed in float32 for float16."""
    return te.compute(x.shape, lambda *i: (widen(x[i]) * widen(scale[i[1]]) + widen(shift[i[1]]))
                      .astype(out_dtype), name="batchnorm")


@rule("BatchNormalization")
def batchnorm_folded(n: LowerNode):
    """Constant scale/bias/mean/var: fold into one per-channel scale and shift at compile time."""
    if not all(i.is_constant for i in n.inputs[1:]):
        return None
    scale, bias, mean, var = (i.data.astype(np.float64) for i in n.inputs[1:])
    folded_scale = scale / np.sqrt(var + n.attrs["epsilon"])
    folded_shift = bias - mean * folded_scale
    dtype = "float32" if n.outputs[0].dtype == "float16" else n.outputs[0].dtype
    args = [folded_scale.astype(dtype), folded_shift.astype(dtype)]
    x = n.placeholder(0)
    s, t = (n.constant_placeholder(a, name) for a, name in zip(args, ("scale", "shift")))
    y = _batchnorm_output(x, s, t, n.outputs[0].dtype)
    lanes = lanes_for(n.target, "float32", n.outputs[0].dtype)
    return make_kernel([x, s, t], [y], _schedule_spatial(lanes), [0] + args,
                       "folded per-channel scale+shift, injective")


@rule("BatchNormalization", fallback=True)
def batchnorm_runtime_params(n: LowerNode):
    """Parameters known only at run time: the per-channel scale and shift are computed in the kernel."""
    x, scale, bias, mean, var = (n.placeholder(i) for i in range(5))
    eps = const(n.attrs["epsilon"], "float32" if str(x.dtype) == "float16" else str(x.dtype))
    folded = te.compute(scale.shape, lambda c: widen(scale[c]) / te.sqrt(widen(var[c]) + eps),
                        name="folded_scale")
    shift = te.compute(scale.shape, lambda c: widen(bias[c]) - widen(mean[c]) * folded[c],
                       name="folded_shift")
    y = _batchnorm_output(x, folded, shift, n.outputs[0].dtype)
    lanes = lanes_for(n.target, "float32", n.outputs[0].dtype)
    return make_kernel([x, scale, bias, mean, var], [y], _schedule_spatial(lanes), [0, 1, 2, 3, 4],
                       "per-channel scale+shift computed in-kernel, injective")


def _schedule_spatial(lanes: int):
    def apply(sch):
        inline_spatial_producers(sch)
        for block in sch.get_child_blocks(sch.get_sblock("root")):
            parallel_vectorize(sch, block, lanes)
    return apply


# -- LRN ----------------------------------------------------------------------------------
def _power(v, beta: float):
    """v ** -beta; the common betas use square roots, which vectorize (pow is a libm call)."""
    one = const(1.0, str(v.ty.dtype))
    if beta == 0.75:
        root = te.sqrt(v)
        return one / (root * te.sqrt(root))
    if beta == 0.5:
        return one / te.sqrt(v)
    if beta == 1.0:
        return one / v
    return te.power(v, const(-beta, str(v.ty.dtype)))


@rule("LRN")
def lrn_across_channels(n: LowerNode):
    """x / (bias + alpha/size * sum of squares over the channel window) ** beta."""
    x = n.placeholder(0)
    xf = _widened(x)
    size, channels = n.attrs["size"], int(x.shape[1])
    before = (size - 1) // 2
    k = te.reduce_axis((0, size), name="k")
    zero = const(0.0, str(xf.dtype))

    def window_square(nn, c, *rest):
        src = c + k - before
        inside = tirx.all(src >= 0, src < channels)
        value = xf[(nn, tirx.max(tirx.min(src, channels - 1), 0), *rest)]
        return te.sum(tirx.Select(inside, value * value, zero), axis=k)

    squares = te.compute(x.shape, window_square, name="square_sum")
    f32 = lambda v: const(v, str(xf.dtype))  # noqa: E731
    y = te.compute(x.shape, lambda *i: (xf[i] * _power(
        f32(n.attrs["bias"]) + f32(n.attrs["alpha"] / size) * squares[i], n.attrs["beta"]))
        .astype(n.outputs[0].dtype), name="lrn")
    return _norm_kernel(n, [x], y, [1], "channel-window sum (memory order) then injective")


# -- LayerNormalization -------------------------------------------------------------------
@rule("LayerNormalization")
def layernorm_two_pass(n: LowerNode):
    """mean, then variance of the centered values, then (x - mean) * rsqrt(var + eps) * scale + bias."""
    x = n.placeholder(0)
    xf = _widened(x)
    axis, rank = n.attrs["axis"], len(x.shape)
    axes = list(range(axis, rank))
    count = int(np.prod([int(x.shape[a]) for a in axes]))
    dtype = str(xf.dtype)
    mean = _keepdims_reduce(xf, "ReduceMean", axes)

    def stat(i):  # index of a per-row statistic
        return tuple(i[:axis]) + (0,) * (rank - axis)

    centered_square = te.compute(x.shape, lambda *i: (xf[i] - mean[stat(i)]) * (xf[i] - mean[stat(i)]),
                                 name="centered_square")
    var_sum = _keepdims_reduce(centered_square, "ReduceSum", axes)
    params = [n.placeholder(i) for i in range(1, len(n.inputs))]
    eps, inv_count = const(n.attrs["epsilon"], dtype), const(1.0 / count, dtype)

    def normalize(*i):
        inv_std = const(1.0, dtype) / te.sqrt(var_sum[stat(i)] * inv_count + eps)
        y = (xf[i] - mean[stat(i)]) * inv_std * widen(load_broadcast(params[0], x.shape, i))
        if len(params) > 1:
            y = y + widen(load_broadcast(params[1], x.shape, i))
        return y.astype(n.outputs[0].dtype)

    y = te.compute(x.shape, normalize, name="layernorm")
    return _norm_kernel(n, [x] + params, y, axes, "two-pass row statistics then injective")


# -- Softmax, LogSoftmax ------------------------------------------------------------------
def _softmax_stages(x, axis: int):
    """(widened x, row max, sum of exp(x - max)) with keepdims statistics along `axis`."""
    xf = _widened(x)
    row_max = _keepdims_reduce(xf, "ReduceMax", [axis])

    def at_stat(i):
        return tuple(0 if d == axis else v for d, v in enumerate(i))

    shifted_exp = te.compute(x.shape, lambda *i: exp(xf[i] - row_max[at_stat(i)]), name="shifted_exp")
    return xf, row_max, _keepdims_reduce(shifted_exp, "ReduceSum", [axis]), at_stat


@rule("Softmax")
def softmax_stable(n: LowerNode):
    """exp(x - max) / sum(exp(x - max)) along the axis."""
    x = n.placeholder(0)
    xf, row_max, total, at_stat = _softmax_stages(x, n.attrs["axis"])
    y = te.compute(x.shape, lambda *i: (exp(xf[i] - row_max[at_stat(i)]) / total[at_stat(i)])
                   .astype(n.outputs[0].dtype), name="softmax")
    return _norm_kernel(n, [x], y, [n.attrs["axis"]], "max, sum of exp (memory order), then injective")


@rule("LogSoftmax")
def log_softmax_stable(n: LowerNode):
    """x - max - log(sum(exp(x - max))) along the axis."""
    x = n.placeholder(0)
    xf, row_max, total, at_stat = _softmax_stages(x, n.attrs["axis"])
    y = te.compute(x.shape, lambda *i: (xf[i] - row_max[at_stat(i)] - te.log(total[at_stat(i)]))
                   .astype(n.outputs[0].dtype), name="log_softmax")
    return _norm_kernel(n, [x], y, [n.attrs["axis"]], "max, sum of exp (memory order), then injective")
