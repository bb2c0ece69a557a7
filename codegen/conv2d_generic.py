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
from typing import Callable

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


def _activations() -> dict:
    """Conv `activation` attribute -> TIR expression builder (the set of ir.ops.nn.CONV_ACTIVATIONS)."""
    from .elementwise import ELEMENTWISE

    return {"": lambda v: v, "Relu": ELEMENTWISE["Relu"], "Relu6": lambda v: ELEMENTWISE["Clip"](v, 0.0, 6.0),
            "HardSwish": ELEMENTWISE["HardSwish"], "Sigmoid": ELEMENTWISE["Sigmoid"]}


@dataclass
class ConvEpilogue:
    """A conv's final output stage, shared by every Conv lowering rule: the accumulated value
    of output element (b, m, y, x), plus bias[m], plus residual[b, m, y, x], then the fused
    activation.

    bias: the bias placeholder [M] (node input 2), or None.
    residual: the residual placeholder, the output's type (node input 3), or None.
    activation: the Conv's `activation` attribute.
    """

    bias: object
    residual: object
    activation: str
    read_residual: Callable | None = None  # read(b, m, y, x) of a residual stored blocked

    @staticmethod
    def of(n: LowerNode, read_blocks: bool = False) -> "ConvEpilogue":
        """The epilogue of Conv node `n`; CompileError for an activation with no lowering.
        read_blocks: read the residual where it is stored (LowerNode.blocks), else as typed."""
        activation = n.attrs.get("activation", "")
        if activation not in _activations():
            raise CompileError(f"node {n.name} (Conv): activation {activation!r} has no lowering; "
                               f"expected one of {sorted(_activations())}")
        residual, read_residual = None, None
        if len(n.inputs) > 3:
            residual, read_residual = n.reader(3, "residual") if read_blocks else (n.placeholder(3, "residual"), None)
        return ConvEpilogue(n.placeholder(2, "bias") if len(n.inputs) > 2 else None, residual, activation,
                            read_residual)

    @property
    def inputs(self) -> list:
        """The kernel inputs it reads (after x and w), in node-input order."""
        return [t for t in (self.bias, self.residual) if t is not None]

    @property
    def args(self) -> list:
        """Kernel.args of `inputs`: node inputs 2 and 3."""
        return [2, 3][:len(self.inputs)]

    @property
    def is_identity(self) -> bool:
        return not self.inputs and not self.activation

    def __call__(self, value, b, m, y, x):
        """The TIR expression stored at output (b, m, y, x) for the conv sum `value` there."""
        if hasattr(value, "asobject"):  # a te tensor element: the TIR load it stands for
            value = value.asobject()
        if self.bias is not None:
            value = value + self.bias[m]
        if self.residual is not None:
            value = value + (self.read_residual(b, m, y, x) if self.read_residual else self.residual[b, m, y, x])
        return _activations()[self.activation](value)

    def flops(self, g: "ConvGeometry") -> int:
        """FLOPs over the whole output (one per output element per step)."""
        steps = len(self.inputs) + int(bool(self.activation))
        return g.n * g.m * g.oh * g.ow * steps


def conv_in_blocks(n: LowerNode) -> tuple:
    """Kernel.in_blocks of a Conv kernel that reads x and the residual where they are stored
    (through `n.reader`, and `ConvEpilogue.of(n, read_blocks=True)`); weights and bias as typed."""
    return tuple(n.input_block(i) if i in (0, 3) else 0 for i in range(len(n.inputs)))


def _source_stage(x, shape, value_at, name="source"):
    """A te stage of `shape` whose element (n, c, y, x) is value_at(y, x) -> (valid, iy, ix), 0 when not valid."""
    from tvm import te, tirx

    def value(b, c, y, xx):
        valid, iy, ix = value_at(y, xx)
        return tirx.if_then_else(valid, x[b, c, iy, ix], tirx.const(0, x.dtype))

    return te.compute(shape, value, name=name)


def _direct_conv(src, weight_at, epilogue, out_shape, cg, mg, kh, kw, strides, dilations):
    """out[b, m, y, x] = epilogue(sum_{c, ry, rx} src[b, group(m)*cg + c, y*s + ry*d, x*s + rx*d]
    * weight_at(m, c, ry, rx))."""
    from tvm import te

    rc = te.reduce_axis((0, cg), name="rc")
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")
    (sh, sw), (dh, dw) = strides, dilations
    conv = te.compute(out_shape, lambda b, m, y, xx: te.sum(
        src[b, (m // mg) * cg + rc, y * sh + ry * dh, xx * sw + rx * dw] * weight_at(m, rc, ry, rx),
        axis=[rc, ry, rx]), name="conv")
    if epilogue.is_identity:
        return conv
    return te.compute(out_shape, lambda b, m, y, xx: epilogue(conv[b, m, y, xx], b, m, y, xx), name="epilogue")


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
    epilogue = ConvEpilogue.of(n)
    out = _direct_conv(src, lambda m, c, ry, rx: w[m, c, ry, rx], epilogue, n.outputs[0].shape,
                       g.c // g.groups, g.m // g.groups, g.kh, g.kw, (g.sh, g.sw), (g.dh, g.dw))
    activation = epilogue.activation
    kernel = make_kernel([x, w] + epilogue.inputs, [out],
                         schedule_direct_conv(n.target.vector_lanes, not epilogue.is_identity), [0, 1] + epilogue.args,
                         "conv2d generic direct (row accumulator)" + (f" + {activation}" if activation else ""))
    return kernel


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
    bias = n.placeholder(2, "bias") if len(n.inputs) > 2 else None
    epilogue = ConvEpilogue(bias, None, "")
    out = _direct_conv(src, lambda m, rc, ry, rx: w[(m // mg) * cg + rc, m % mg, kh - 1 - ry, kw - 1 - rx],
                       epilogue, out_shape, cg, mg, kh, kw, (1, 1), (dh, dw))
    return make_kernel([x, w] + epilogue.inputs, [out], schedule_direct_conv(n.target.vector_lanes, bias is not None),
                       [0, 1] + epilogue.args,
                       "conv_transpose generic: direct conv over zero-inserted input")
