"""Generic 2-D convolution and ConvTranspose: correct for every dtype and attribute, parallel.

Both are one direct convolution over a "source" stage that maps padded input coordinates
to input values: zero padding for Conv; zero padding plus zero insertion between input
pixels for ConvTranspose, whose weights are read flipped and with their channel axes
swapped (ConvTranspose(x, w) == Conv(dilate(x), flip(w)^T)). The accumulator of one output
row lives in a local buffer so that the reduction loops sit outside the row loop, which is
vectorized.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import CompileError
from .kernel import Kernel, LowerNode
from .rules import make_kernel, rule
from .schedule_tiles import schedule_row_accumulator


@dataclass(frozen=True)
class ConvGeometry:
    """Sizes of a 2-D Conv node. pads are (top, left, bottom, right)."""

    n: int
    c: int
    h: int
    w: int
    m: int
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    pt: int
    pl: int
    groups: int
    oh: int
    ow: int

    @staticmethod
    def of(n: LowerNode) -> "ConvGeometry":
        """The geometry of Conv node `n` (output size from its inferred output type)."""
        b, c, h, w = n.inputs[0].type.shape
        m, _, kh, kw = n.inputs[1].type.shape
        a = n.attrs
        _, _, oh, ow = n.outputs[0].shape
        return ConvGeometry(b, c, h, w, m, kh, kw, *a["strides"], *a["dilations"], a["pads"][0], a["pads"][1],
                            a["group"], oh, ow)


def conv_epilogue(value, channel, bias, activation: str = ""):
    """A conv's final output stage, shared by every Conv lowering rule: the accumulated
    `value` of output channel `channel`, plus the bias, then the fused activation.

    Args:
        value: the conv sum at one output element (a TIR expression or te tensor element).
        channel: the output channel index (TIR expression).
        bias: the bias placeholder [M], or None.
        activation: the Conv's `activation` attribute ("" or "Relu").
    Returns:
        the TIR expression stored to the output.
    """
    from .elementwise import relu

    if hasattr(value, "asobject"):  # a te tensor element: the TIR load it stands for
        value = value.asobject()
    if bias is not None:
        value = value + bias[channel]
    if activation == "Relu":
        value = relu(value)
    elif activation:
        raise CompileError(f"Conv activation {activation!r} has no lowering")
    return value


def epilogue_flops(g: "ConvGeometry", has_bias: bool, activation: str) -> int:
    """FLOPs of `conv_epilogue` over the whole output (one per output element per step)."""
    return g.n * g.m * g.oh * g.ow * (int(has_bias) + int(bool(activation)))


def _source_stage(x, shape, value_at, name="source"):
    """A te stage of `shape` whose element (n, c, y, x) is value_at(y, x) -> (valid, iy, ix), 0 when not valid."""
    from tvm import te, tirx

    def value(b, c, y, xx):
        valid, iy, ix = value_at(y, xx)
        return tirx.if_then_else(valid, x[b, c, iy, ix], tirx.const(0, x.dtype))

    return te.compute(shape, value, name=name)


def _direct_conv(src, weight_at, bias, out_shape, cg, mg, kh, kw, strides, dilations, activation=""):
    """out[b, m, y, x] = act(sum_{c, ry, rx} src[b, group(m)*cg + c, y*s + ry*d, x*s + rx*d]
    * weight_at(m, c, ry, rx) + bias[m])."""
    from tvm import te

    rc = te.reduce_axis((0, cg), name="rc")
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")
    (sh, sw), (dh, dw) = strides, dilations
    conv = te.compute(out_shape, lambda b, m, y, xx: te.sum(
        src[b, (m // mg) * cg + rc, y * sh + ry * dh, xx * sw + rx * dw] * weight_at(m, rc, ry, rx),
        axis=[rc, ry, rx]), name="conv")
    if bias is None and not activation:
        return conv
    return te.compute(out_shape, lambda b, m, y, xx: conv_epilogue(conv[b, m, y, xx], m, bias, activation),
                      name="epilogue")


def schedule_direct_conv(lanes: int, has_epilogue: bool):
    """Schedule for `_direct_conv`: parallel over (n, m, row), row accumulator, vectorized row."""
    def apply(sch):
        schedule_row_accumulator(sch, "conv", lanes, "epilogue" if has_epilogue else None)
        src = sch.get_sblock("source")
        sch.parallel(sch.fuse(*sch.get_loops(src)[:3]))
    return apply


def conv2d_generic(n: LowerNode) -> Kernel:
    """Any Conv node as a direct convolution over a zero-padded copy of the input.

    Args:
        n: the Conv node.
    Returns:
        the Kernel.
    """
    from tvm import tirx

    g = ConvGeometry.of(n)
    x, w = n.placeholder(0, "x"), n.placeholder(1, "w")
    hp = (g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1
    wp = (g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1
    src = _source_stage(x, (g.n, g.c, hp, wp), lambda y, xx: (
        tirx.all(y >= g.pt, y < g.pt + g.h, xx >= g.pl, xx < g.pl + g.w), y - g.pt, xx - g.pl))
    ins, args, bias = [x, w], [0, 1], None
    if len(n.inputs) > 2:
        bias = n.placeholder(2, "bias")
        ins, args = ins + [bias], args + [2]
    activation = n.attrs.get("activation", "")
    out = _direct_conv(src, lambda m, c, ry, rx: w[m, c, ry, rx], bias, n.outputs[0].shape,
                       g.c // g.groups, g.m // g.groups, g.kh, g.kw, (g.sh, g.sw), (g.dh, g.dw), activation)
    return make_kernel(ins, [out], schedule_direct_conv(n.target.vector_lanes, bias is not None or activation),
                       args, "conv2d generic direct (row accumulator)" + (f" + {activation}" if activation else ""))


@rule("ConvTranspose")
def conv_transpose_generic(n: LowerNode) -> Kernel:
    """ConvTranspose as a stride-1 conv over the zero-inserted, padded input with flipped weights.

    Args:
        n: the ConvTranspose node.
    Returns:
        the Kernel.
    """
    from tvm import tirx

    b, c, h, wd = n.inputs[0].type.shape
    _, mg, kh, kw = n.inputs[1].type.shape
    a = n.attrs
    (sh, sw), (dh, dw), (pt, pl) = a["strides"], a["dilations"], a["pads"][:2]
    groups, out_shape = a["group"], n.outputs[0].shape
    cg = c // groups
    # output row y sums src rows y + ry*dh; src row r holds input row (r - off)/s when that is exact
    off_h, off_w = (kh - 1) * dh - pt, (kw - 1) * dw - pl
    hp, wp = out_shape[2] + (kh - 1) * dh, out_shape[3] + (kw - 1) * dw
    x, w = n.placeholder(0, "x"), n.placeholder(1, "w")

    def source_at(y, xx):
        ty, tx = y - off_h, xx - off_w
        valid = tirx.all(ty >= 0, tx >= 0, ty % sh == 0, tx % sw == 0, ty // sh < h, tx // sw < wd)
        return valid, ty // sh, tx // sw

    src = _source_stage(x, (b, c, hp, wp), source_at)
    ins, args, bias = [x, w], [0, 1], None
    if len(n.inputs) > 2:
        bias = n.placeholder(2, "bias")
        ins, args = ins + [bias], args + [2]
    out = _direct_conv(src, lambda m, rc, ry, rx: w[(m // mg) * cg + rc, m % mg, kh - 1 - ry, kw - 1 - rx],
                       bias, out_shape, cg, mg, kh, kw, (1, 1), (dh, dw))
    return make_kernel(ins, [out], schedule_direct_conv(n.target.vector_lanes, bias is not None), args,
                       "conv_transpose generic: direct conv over zero-inserted input")
