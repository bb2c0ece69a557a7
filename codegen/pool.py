"""Pooling kernels: MaxPool and AveragePool (2-D windows), GlobalAveragePool, GlobalMaxPool.

Window pools run one output row per parallel task (n, c, oh): the padded input rows the
row needs are staged in a small buffer first (so the inner loop has no bounds checks),
then for each window tap (kh, kw) the whole output row is updated from a row of input.
That innermost loop walks the input with the pool stride; it is left to LLVM's loop
vectorizer, which turns stride-2 reads into wide loads and shuffles (TVM's own
vectorizer would insert element by element).
"""
from __future__ import annotations

import math

import numpy as np

from .kernel import Kernel, LowerNode
from .rules import make_kernel, rule
from .schedule_common import PARALLEL_GRAIN, lanes_for, schedule_reduction


def _lowest(dtype: str):
    """The identity of max: -inf, or the smallest integer."""
    return -np.inf if np.issubdtype(np.dtype(dtype), np.floating) else np.iinfo(dtype).min


def _accumulator(dtype: str) -> str:
    """Sums of float16 run in float32; other dtypes in themselves."""
    return "float32" if dtype == "float16" else dtype


def _window_geometry(n: LowerNode):
    """Per spatial axis: (input size, output size, kernel, stride, begin pad, dilation)."""
    a = n.attrs
    in_hw, out_hw = n.inputs[0].type.shape[2:], n.outputs[0].shape[2:]
    return [(in_hw[i], out_hw[i], a["kernel_shape"][i], a["strides"][i], a["pads"][i],
             a["dilations"][i]) for i in range(2)]


def _staged_input(x, geometry, fill):
    """The input as the windows see it, indexed by window position + begin pad: `x`
    itself when no window reaches outside it, else a padded stage (filled with `fill`)
    spanning exactly the rows and columns the windows touch."""
    from tvm import te, tirx

    spans = [(o - 1) * s + (k - 1) * d + 1 for _, o, k, s, _, d in geometry]
    if all(p == 0 and span <= size for (size, _, _, _, p, _), span in zip(geometry, spans)):
        return x
    (h, *_, top, _), (w, *_, left, _) = geometry

    def fn(b, c, i, j, *v):  # v: the channel within a block of an NCHW{b}c input
        inside = tirx.all(i >= top, i < h + top, j >= left, j < w + left)
        return te.if_then_else(inside, x[(b, c, i - top, j - left, *v)], tirx.const(fill, x.dtype))

    return te.compute(tuple(x.shape[:2]) + tuple(spans) + tuple(x.shape[4:]), fn, name="pad")


def _window_reduce(n: LowerNode, x, combine, fill, dtype: str, name: str):
    """te reduction over every window tap: combine(value as `dtype`, axis=[kh, kw]); x is NCHW
    or NCHW{b}c (a 5-D x keeps its last axis)."""
    from tvm import te

    geometry = _window_geometry(n)
    src = _staged_input(x, geometry, fill)
    (_, oh, kh, sh, _, dh), (_, ow, kw, sw, _, dw) = geometry
    rh, rw = te.reduce_axis((0, kh), "kh"), te.reduce_axis((0, kw), "kw")
    return te.compute(
        tuple(x.shape[:2]) + (oh, ow) + tuple(x.shape[4:]),
        lambda b, c, i, j, *v: combine(src[(b, c, i * sh + rh * dh, j * sw + rw * dw, *v)].astype(dtype),
                                       axis=[rh, rw]),
        name=name)


def schedule_blocked_window_pool(reduce_name: str, output_name: str | None):
    """Schedule for `_window_reduce` over NCHW{b}c: parallel over (n, channel block, output
    row); per output pixel the taps accumulate a vector of the block's channels."""
    def apply(sch):
        block = sch.get_sblock(reduce_name)
        out = sch.get_sblock(output_name) if output_name else sch.cache_write(block, 0, "local")
        b, c, i, j, v = sch.get_loops(out)
        rows = sch.fuse(b, c, i)
        sch.parallel(rows)
        sch.vectorize(v)
        sch.compute_at(block, j)
        taps = sch.get_loops(block)[2:]  # under rows and j: v, then the taps kh, kw
        sch.reorder(*taps[1:], taps[0])
        sch.vectorize(taps[0])  # before the init is split off: TVM rejects it after
        init = sch.decompose_reduction(block, taps[1])
        sch.vectorize(sch.get_loops(init)[-1])
        if any(sch.get(b_).name_hint == "pad" for b_ in sch.get_child_blocks(sch.get_sblock("root"))):
            pad = sch.get_sblock("pad")
            sch.compute_at(pad, rows)
            sch.vectorize(sch.get_loops(pad)[-1])
    return apply


def schedule_window_pool(reduce_name: str, output_name: str | None, lanes: int):
    """Schedule for `_window_reduce` kernels.

    Args:
        reduce_name: the reduction block.
        output_name: the elementwise block consuming it (None: the reduction is the
            output; a local accumulator row is then added).
        lanes: SIMD lanes of the output dtype.
    Returns:
        a schedule function for make_kernel.
    """
    def apply(sch):
        block = sch.get_sblock(reduce_name)
        if output_name is None:
            out = sch.cache_write(block, 0, "local")
        else:
            out = sch.get_sblock(output_name)
        b, c, i, j = sch.get_loops(out)
        rows = sch.fuse(b, c, i)
        extents = [int(sch.get(l).extent) for l in (rows, j)]
        if math.prod(extents) >= PARALLEL_GRAIN:
            sch.parallel(rows)
        if extents[1] > 1:
            sch.vectorize(j)
        sch.compute_at(block, rows)
        # under the row loop: ow, then the taps; compute_at drops the unit ones (ow included)
        taps = sch.get_loops(block)[1:]
        ow = taps.pop(0) if extents[1] > 1 else None
        if ow is not None and taps:
            sch.reorder(*taps, ow)
        if ow is not None or taps:  # else one tap per output: the init needs no loop of its own
            init = sch.decompose_reduction(block, taps[0] if taps else ow)
            if ow is not None:
                sch.vectorize(sch.get_loops(init)[-1])
        try:
            pad = sch.get_sblock("pad")
        except Exception:  # no window reaches outside the input: nothing staged
            return
        sch.compute_at(pad, rows)
        if int(sch.get(sch.get_loops(pad)[-1]).extent) >= lanes:
            sch.vectorize(sch.get_loops(pad)[-1])
    return apply


def _blocked(n: LowerNode) -> bool:
    """The pool runs on NCHW{b}c tensors (codegen/layout.py gives it their 5-D types)."""
    return n.out_block > 0


@rule("MaxPool")
def max_pool_rows(n: LowerNode) -> Kernel:
    from tvm import te

    x = n.placeholder(0)
    dtype = n.inputs[0].type.dtype
    y = _window_reduce(n, x, te.max, _lowest(dtype), dtype, "max_pool")
    if _blocked(n):
        return make_kernel([x], [y], schedule_blocked_window_pool("max_pool", None), [0],
                           "NCHWc window max, vector of channels, parallel rows")
    return make_kernel([x], [y], schedule_window_pool("max_pool", None, lanes_for(n.target, dtype)),
                       [0], "row-parallel window max, staged padded rows")


def _window_counts(n: LowerNode) -> np.ndarray:
    """[OH, OW] divisor of each window: its taps inside the input, plus inside the
    explicit pads iff count_include_pad (never the ceil_mode overhang)."""
    per_axis = []
    for axis, (size, out, k, s, begin, d) in enumerate(_window_geometry(n)):
        end = n.attrs["pads"][2 + axis]
        lo, hi = (-begin, size + end) if n.attrs["count_include_pad"] else (0, size)
        taps = np.arange(out)[:, None] * s - begin + np.arange(k)[None, :] * d
        per_axis.append(((taps >= lo) & (taps < hi)).sum(axis=1))
    return np.outer(*per_axis)


@rule("AveragePool")
def average_pool_rows(n: LowerNode) -> Kernel:
    from tvm import te

    x = n.placeholder(0)
    dtype = n.inputs[0].type.dtype
    acc = _accumulator(dtype)
    counts = _window_counts(n).astype(acc)
    count = n.constant_placeholder(counts, "counts")
    total = _window_reduce(n, x, te.sum, 0.0, acc, "window_sum")
    y = te.compute(total.shape, lambda b, c, i, j, *v: (total[(b, c, i, j, *v)] / count[i, j]).astype(dtype),
                   name="average_pool")
    if _blocked(n):
        return make_kernel([x, count], [y], schedule_blocked_window_pool("window_sum", "average_pool"),
                           [0, counts], "NCHWc window sum, vector of channels, parallel rows")
    return make_kernel([x, count], [y],
                       schedule_window_pool("window_sum", "average_pool", lanes_for(n.target, dtype)),
                       [0, counts], "row-parallel window sum, staged padded rows")


def _global_reduce(n: LowerNode, combine, dtype: str, name: str):
    from tvm import te

    x = n.placeholder(0)
    if _blocked(n):  # [N, C/b, H, W, b]: sum over H, W for a vector of channels
        spatial = [te.reduce_axis((0, d), f"r{i}") for i, d in enumerate(n.inputs[0].type.shape[2:4])]
        out = te.compute(n.outputs[0].shape, lambda b, c, _h, _w, v: combine(
            x[(b, c, *spatial, v)].astype(dtype), axis=spatial), name=name)
        return x, out
    spatial = [te.reduce_axis((0, d), f"r{i}") for i, d in enumerate(n.inputs[0].type.shape[2:])]
    out = te.compute(n.outputs[0].shape,
                     lambda b, c, *_: combine(x[(b, c, *spatial)].astype(dtype), axis=spatial),
                     name=name)
    return x, out


def _schedule_blocked_global(name: str):
    """Parallel over (n, channel block); the spatial loops outside the vector of channels
    (the division of an average is a pass over C values only: left alone)."""
    def apply(sch):
        block = sch.get_sblock(name)
        b, c, h, w, v, rh, rw = sch.get_loops(block)
        sch.reorder(b, c, h, w, rh, rw, v)
        sch.parallel(sch.fuse(b, c))
        sch.vectorize(v)
        init = sch.decompose_reduction(block, rh)
        sch.vectorize(sch.get_loops(init)[-1])
    return apply


@rule("GlobalMaxPool")
def global_max_pool(n: LowerNode) -> Kernel:
    from tvm import te

    dtype = n.inputs[0].type.dtype
    x, y = _global_reduce(n, te.max, dtype, "global_max_pool")
    if _blocked(n):
        return make_kernel([x], [y], _schedule_blocked_global("global_max_pool"), [0],
                           "NCHWc: parallel over channel blocks, vector of channels")
    return make_kernel([x], [y], schedule_reduction(lanes_for(n.target, dtype)), [0],
                       "parallel over channels, serial max")


@rule("GlobalAveragePool")
def global_average_pool(n: LowerNode) -> Kernel:
    from tvm import te

    dtype = n.inputs[0].type.dtype
    x, total = _global_reduce(n, te.sum, _accumulator(dtype), "spatial_sum")
    count = math.prod(n.inputs[0].type.shape[2:4] if _blocked(n) else n.inputs[0].type.shape[2:])
    y = te.compute(total.shape, lambda *i: (total(*i) / float(count)).astype(dtype),
                   name="global_average_pool")
    if _blocked(n):
        return make_kernel([x], [y], _schedule_blocked_global("spatial_sum"), [0],
                           "NCHWc: parallel over channel blocks, vector of channels")
    return make_kernel([x], [y], schedule_reduction(lanes_for(n.target, dtype)), [0],
                       "parallel over channels, serial sum")
