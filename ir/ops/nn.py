"""Neural-network ops: Conv, ConvTranspose, Gemm, MatMul, normalizations and softmaxes.
(The pools live in pool.py.)"""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ..registry import REQUIRED, Cost, broadcast_shapes, register
from ..types import TensorType
from .common import (channel_view, check_window_attrs, reduction_cost, require_axis, require_float,
                     require_len, require_rank, require_same_dtype, sliding_windows,
                     unidirectional_broadcast, window_output_hw)

_CONV_ATTRS = {"strides": ("ints", (1, 1)), "pads": ("ints", (0, 0, 0, 0)),
               "dilations": ("ints", (1, 1)), "group": ("int", 1)}


def _io_bytes(ins, outs) -> tuple:
    return sum(t.nbytes for t in ins), sum(t.nbytes for t in outs)


def _check_conv_operands(x, w, b, group, transposed):
    """Common checks of Conv (w [M, C/group, ...]) and ConvTranspose (w [C, M/group, ...]);
    returns the number of output channels."""
    require_rank(x, 4, "x")
    require_rank(w, 4, "w")
    require_same_dtype(x, w, *([b] if b is not None else []))
    if group < 1 or x.shape[1] % group:
        raise ShapeError(f"group={group} does not divide the {x.shape[1]} input channels")
    w_in = w.shape[0] if transposed else w.shape[1] * group
    if w_in != x.shape[1]:
        raise ShapeError(f"channel mismatch: x has {x.shape[1]} channels but w {list(w.shape)} "
                         f"with group={group} expects {w_in}")
    out_channels = w.shape[1] * group if transposed else w.shape[0]
    if out_channels % group:
        raise ShapeError(f"w has {out_channels} output channels, not divisible by group={group}")
    if b is not None and b.shape != (out_channels,):
        raise ShapeError(f"bias shape {list(b.shape)} must be [{out_channels}]")
    return out_channels


# a Conv's fused elementwise epilogue, after the bias and the residual (ir/OPS.md)
CONV_ACTIVATIONS = {
    "": lambda y: y,
    "Relu": lambda y: np.maximum(y, 0),
    "Relu6": lambda y: np.minimum(np.maximum(y, 0), 6),  # ONNX Clip(min=0, max=6)
    "HardSwish": lambda y: y * np.clip(y / 6 + 0.5, 0, 1),
    "Sigmoid": lambda y: 1 / (1 + np.exp(-y)),
}


def _conv_infer(x, w, b=None, r=None, *, strides, pads, dilations, group, activation=""):
    if activation not in CONV_ACTIVATIONS:
        raise ShapeError(f"Conv activation {activation!r} is not one of {list(CONV_ACTIVATIONS)}")
    m = _check_conv_operands(x, w, b, group, transposed=False)
    check_window_attrs(x, w.shape[2:], strides, pads, dilations)
    y = TensorType(x.dtype, (x.shape[0], m) + window_output_hw(x.shape, w.shape[2:], strides, pads, dilations))
    if r is not None and r != y:
        raise ShapeError(f"residual input r is {r}, expected the conv output type {y}")
    return y


def _conv_cost(ins, outs, *, group, **attrs):
    x, w = ins[0], ins[1]
    flops = 2 * outs[0].numel * (x.shape[1] // group) * w.shape[2] * w.shape[3]
    return Cost(flops, *_io_bytes(ins, outs))


@register("Conv", inputs=(2, 4), attrs={**_CONV_ATTRS, "activation": ("str", "")}, infer=_conv_infer,
          cost=_conv_cost)
def conv(x, w, b=None, r=None, *, strides, pads, dilations, group, activation=""):
    """2-D cross-correlation, grouped, with ONNX pads (top, left, bottom, right), plus the bias,
    plus the fused residual r (same type as the output; needs b), then the fused activation
    (one of CONV_ACTIVATIONS)."""
    out_hw = window_output_hw(x.shape, w.shape[2:], strides, pads, dilations)
    windows = sliding_windows(x, w.shape[2:], strides, pads, dilations, out_hw)
    cin, cout = x.shape[1] // group, w.shape[0] // group
    # one tensordot (an im2col GEMM) per group: [N, OH, OW, M/group]
    parts = [np.tensordot(windows[:, g * cin:(g + 1) * cin], w[g * cout:(g + 1) * cout],
                          axes=([1, 4, 5], [1, 2, 3])) for g in range(group)]
    y = np.concatenate(parts, axis=-1).transpose(0, 3, 1, 2)
    if b is not None:
        y = y + channel_view(b, 4)
    if r is not None:
        y = y + r
    return np.ascontiguousarray(CONV_ACTIVATIONS[activation](y), dtype=x.dtype)


def _conv_transpose_infer(x, w, b=None, *, strides, pads, dilations, group, output_padding):
    m = _check_conv_operands(x, w, b, group, transposed=True)
    check_window_attrs(x, w.shape[2:], strides, pads, dilations)
    require_len(output_padding, 2, "output_padding")
    hw = []
    for i in range(2):
        size = (strides[i] * (x.shape[2 + i] - 1) + output_padding[i]
                + (w.shape[2 + i] - 1) * dilations[i] + 1 - pads[i] - pads[2 + i])
        if size < 1:
            raise ShapeError(f"output size {size} along spatial axis {i} is not positive")
        hw.append(size)
    return TensorType(x.dtype, (x.shape[0], m, *hw))


def _conv_transpose_cost(ins, outs, *, group, **attrs):
    x, w = ins[0], ins[1]
    flops = 2 * x.numel * (w.shape[1]) * w.shape[2] * w.shape[3]
    return Cost(flops, *_io_bytes(ins, outs))


@register("ConvTranspose", inputs=(2, 3), infer=_conv_transpose_infer, cost=_conv_transpose_cost,
          attrs={**_CONV_ATTRS, "output_padding": ("ints", (0, 0))})
def conv_transpose(x, w, b=None, *, strides, pads, dilations, group, output_padding):
    """2-D transposed convolution: scatter every input pixel times the kernel, then crop pads."""
    n, c, h, wd = x.shape
    cin, cout = c // group, w.shape[1]
    kh, kw = w.shape[2:]
    full = [strides[0] * (h - 1) + (kh - 1) * dilations[0] + 1 + output_padding[0],
            strides[1] * (wd - 1) + (kw - 1) * dilations[1] + 1 + output_padding[1]]
    y = np.zeros((n, cout * group, *full), dtype=np.result_type(x, w))
    for g in range(group):
        # [N, H, W, M/group, kH, kW]: every input pixel's contribution for each tap
        taps = np.tensordot(x[:, g * cin:(g + 1) * cin], w[g * cin:(g + 1) * cin], axes=([1], [0]))
        taps = taps.transpose(0, 3, 4, 5, 1, 2)
        for i in range(kh):
            for j in range(kw):
                top, left = i * dilations[0], j * dilations[1]
                y[:, g * cout:(g + 1) * cout,
                  top:top + strides[0] * (h - 1) + 1:strides[0],
                  left:left + strides[1] * (wd - 1) + 1:strides[1]] += taps[:, :, i, j]
    y = y[:, :, pads[0]:full[0] - pads[2], pads[1]:full[1] - pads[3]]
    if b is not None:
        y = y + channel_view(b, 4)
    return np.ascontiguousarray(y, dtype=x.dtype)


def _gemm_infer(a, b, c=None, *, alpha, beta, transA, transB):
    require_rank(a, 2, "a")
    require_rank(b, 2, "b")
    require_same_dtype(a, b, *([c] if c is not None else []))
    m, k = a.shape[::-1] if transA else a.shape
    k2, n = b.shape[::-1] if transB else b.shape
    if k != k2:
        raise ShapeError(f"inner dimensions differ: a {list(a.shape)} (transA={transA}), "
                         f"b {list(b.shape)} (transB={transB})")
    if c is not None:
        unidirectional_broadcast((m, n), c.shape, "c")
    return TensorType(a.dtype, (m, n))


def _gemm_cost(ins, outs, *, transA, **attrs):
    k = ins[0].shape[0 if transA else 1]
    return Cost(2 * outs[0].numel * k, *_io_bytes(ins, outs))


@register("Gemm", inputs=(2, 3), infer=_gemm_infer, cost=_gemm_cost,
          attrs={"alpha": ("float", 1.0), "beta": ("float", 1.0), "transA": ("int", 0),
                 "transB": ("int", 0)})
def gemm(a, b, c=None, *, alpha, beta, transA, transB):
    """alpha * op(a) @ op(b) + beta * c."""
    a = a.T if transA else a
    b = b.T if transB else b
    y = a @ b
    if alpha != 1.0:
        y = y * y.dtype.type(alpha)
    if c is not None:
        y = y + (c * c.dtype.type(beta) if beta != 1.0 else c)
    return y.astype(a.dtype, copy=False)


def _matmul_infer(a, b):
    require_same_dtype(a, b)
    if a.rank == 0 or b.rank == 0:
        raise ShapeError("MatMul operands must have rank >= 1")
    a_shape = (1,) + a.shape if a.rank == 1 else a.shape
    b_shape = b.shape + (1,) if b.rank == 1 else b.shape
    if a_shape[-1] != b_shape[-2]:
        raise ShapeError(f"inner dimensions differ: {list(a.shape)} @ {list(b.shape)}")
    batch = broadcast_shapes(a_shape[:-2], b_shape[:-2])
    out = batch + (a_shape[-2],) * (a.rank > 1) + (b_shape[-1],) * (b.rank > 1)
    return TensorType(a.dtype, out)


def _matmul_cost(ins, outs, **attrs):
    return Cost(2 * outs[0].numel * ins[0].shape[-1], *_io_bytes(ins, outs))


@register("MatMul", inputs=2, infer=_matmul_infer, cost=_matmul_cost)
def matmul(a, b):
    """numpy.matmul."""
    return np.matmul(a, b)


def _batchnorm_infer(x, scale, bias, mean, var, *, epsilon):
    require_float(x, "x")
    require_same_dtype(x, scale, bias, mean, var)
    if x.rank < 2:
        raise ShapeError(f"x must have rank >= 2, got {x}")
    for name, t in (("scale", scale), ("bias", bias), ("mean", mean), ("var", var)):
        if t.shape != (x.shape[1],):
            raise ShapeError(f"{name} shape {list(t.shape)} must be [{x.shape[1]}] (the channels)")
    return x


@register("BatchNormalization", inputs=5, attrs={"epsilon": ("float", 1e-5)},
          infer=_batchnorm_infer)
def batch_normalization(x, scale, bias, mean, var, *, epsilon):
    """(x - mean) / sqrt(var + epsilon) * scale + bias, per channel (axis 1)."""
    c = [channel_view(v, x.ndim) for v in (scale, bias, mean, var)]
    y = (x - c[2]) / np.sqrt(c[3] + x.dtype.type(epsilon)) * c[0] + c[1]
    return y.astype(x.dtype, copy=False)


def _lrn_infer(x, *, size, alpha, beta, bias):
    require_float(x, "x")
    if x.rank < 3:
        raise ShapeError(f"x must have rank >= 3, got {x}")
    if size < 1:
        raise ShapeError(f"size={size} must be positive")
    return x


@register("LRN", attrs={"size": ("int", REQUIRED), "alpha": ("float", 1e-4),
                        "beta": ("float", 0.75), "bias": ("float", 1.0)}, infer=_lrn_infer)
def lrn(x, *, size, alpha, beta, bias):
    """x / (bias + alpha/size * sum of x^2 over the `size` channels around c) ** beta."""
    before, after = (size - 1) // 2, size // 2  # floor and ceil of (size-1)/2
    widths = [(0, 0), (before, after)] + [(0, 0)] * (x.ndim - 2)
    squares = np.pad(np.square(x.astype(np.float64)), widths)
    window_sums = np.lib.stride_tricks.sliding_window_view(squares, size, axis=1).sum(axis=-1)
    return (x / (bias + alpha / size * window_sums) ** beta).astype(x.dtype)


def _layernorm_infer(x, scale, bias=None, *, axis, epsilon):
    require_float(x, "x")
    require_same_dtype(x, scale, *([bias] if bias is not None else []))
    require_axis(axis, x.rank)
    for name, t in (("scale", scale), ("bias", bias)):
        if t is not None:
            unidirectional_broadcast(x.shape[axis:], t.shape, name)
    return x


@register("LayerNormalization", inputs=(2, 3), infer=_layernorm_infer, cost=reduction_cost,
          attrs={"axis": ("int", REQUIRED), "epsilon": ("float", 1e-5)})
def layer_normalization(x, scale, bias=None, *, axis, epsilon):
    """Normalize over axes [axis, rank) then scale (and shift)."""
    axes = tuple(range(axis, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    var = np.square(centered).mean(axis=axes, keepdims=True)
    y = centered / np.sqrt(var + x.dtype.type(epsilon)) * scale
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype, copy=False)


def _softmax_infer(x, *, axis):
    require_float(x, "x")
    require_axis(axis, x.rank)
    return x


@register("Softmax", attrs={"axis": ("int", REQUIRED)}, infer=_softmax_infer, cost=reduction_cost)
def softmax(x, *, axis):
    """exp(x) / sum(exp(x)) along one axis (opset 13)."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype, copy=False)


@register("LogSoftmax", attrs={"axis": ("int", REQUIRED)}, infer=_softmax_infer,
          cost=reduction_cost)
def log_softmax(x, *, axis):
    """x - log(sum(exp(x))) along one axis (opset 13)."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return (shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))).astype(x.dtype, copy=False)

