"""The op registry: every IR op is declared once, here or in ir/ops/.

A declaration gives the attribute schema, the number of inputs, shape/dtype
inference, a numpy reference implementation and a cost. Frontend, passes,
codegen, the interpreter and the cost model all read the same OpDef.

    @register("LeakyRelu", attrs={"alpha": ("float", 0.01)}, infer=same_as_input(0))
    def leaky_relu(x, alpha):
        return np.where(x >= 0, x, x * alpha).astype(x.dtype)

Reference functions take the input arrays positionally and the attributes as
keywords and return one array or a tuple of arrays. `infer` has the same
signature over TensorTypes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import NnforgeError, ShapeError, UnsupportedError
from .types import TensorType

REQUIRED = object()
_ATTR_KINDS = {
    "int": lambda v: int(v),
    "float": lambda v: float(v),
    "str": lambda v: v.decode() if isinstance(v, bytes) else str(v),
    "ints": lambda v: tuple(int(x) for x in v),
    "floats": lambda v: tuple(float(x) for x in v),
}


@dataclass(frozen=True)
class Cost:
    """Work of one node: floating/integer ops and bytes moved to/from memory."""

    flops: int
    bytes_read: int
    bytes_written: int

    def __add__(self, other):
        return Cost(self.flops + other.flops, self.bytes_read + other.bytes_read,
                    self.bytes_written + other.bytes_written)


def elementwise_cost(ins, outs, **attrs) -> Cost:
    """One op per output element; every input read once, every output written once."""
    return Cost(sum(t.numel for t in outs), sum(t.nbytes for t in ins), sum(t.nbytes for t in outs))


def data_movement_cost(ins, outs, **attrs) -> Cost:
    """Copies: no arithmetic."""
    return Cost(0, sum(t.nbytes for t in ins), sum(t.nbytes for t in outs))


@dataclass
class OpDef:
    name: str
    reference: Callable
    infer: Callable
    attrs: dict
    inputs: tuple  # (min, max); max None = variadic
    cost_fn: Callable
    doc: str = ""

    def check_attrs(self, attrs: dict, node: str = "?") -> dict:
        """Normalize attribute values to the schema's kinds, fill defaults, reject unknowns."""
        unknown = set(attrs) - set(self.attrs)
        if unknown:
            raise UnsupportedError(f"node {node} ({self.name}): unknown attribute(s) {sorted(unknown)}")
        out = {}
        for key, (kind, default) in self.attrs.items():
            if key in attrs and attrs[key] is not None:
                try:
                    out[key] = _ATTR_KINDS[kind](attrs[key])
                except (TypeError, ValueError) as e:
                    raise NnforgeError(f"node {node} ({self.name}): attribute {key} must be {kind}, "
                                       f"got {attrs[key]!r}") from e
            elif default is REQUIRED:
                raise NnforgeError(f"node {node} ({self.name}): missing required attribute {key}")
            else:
                out[key] = default
        return out

    def infer_types(self, types, attrs, node: str = "?") -> list:
        lo, hi = self.inputs
        if len(types) < lo or (hi is not None and len(types) > hi):
            want = f"{lo}" if lo == hi else f"{lo}..{hi if hi is not None else 'n'}"
            raise ShapeError(f"node {node} ({self.name}): expected {want} inputs, got {len(types)}")
        try:
            out = self.infer(*types, **attrs)
        except ShapeError as e:
            raise ShapeError(f"node {node} ({self.name}): {e}") from None
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def run(self, arrays, attrs) -> list:
        out = self.reference(*arrays, **attrs)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def cost(self, in_types, out_types, attrs) -> Cost:
        return self.cost_fn(in_types, out_types, **attrs)


OPS: dict[str, OpDef] = {}


def register(name: str, *, infer: Callable, attrs: dict | None = None, inputs=(1, 1),
             cost: Callable = elementwise_cost):
    """Declare an op; decorates its numpy reference implementation.

    Args:
        name: the op name used in graphs.
        infer: `infer(*input_types, **attrs) -> TensorType | list[TensorType]`.
        attrs: schema `{name: (kind, default)}`; kind in int/float/str/ints/floats,
            default REQUIRED for mandatory attributes.
        inputs: `(min, max)` input count (max None = variadic) or an int.
        cost: `cost(input_types, output_types, **attrs) -> Cost`.
    """
    if isinstance(inputs, int):
        inputs = (inputs, inputs)

    def deco(fn):
        if name in OPS:
            raise NnforgeError(f"op {name} registered twice")
        OPS[name] = OpDef(name, fn, infer, dict(attrs or {}), tuple(inputs), cost, fn.__doc__ or "")
        return fn

    return deco


def get_op(name: str) -> OpDef:
    """The OpDef for `name`; raises UnsupportedError for an unknown op."""
    _load_ops()
    try:
        return OPS[name]
    except KeyError:
        raise UnsupportedError(f"unknown IR op {name!r}") from None


def _load_ops():
    if not OPS:
        from . import ops  # noqa: F401  (registers every op)


# -- inference helpers shared by op declarations ------------------------------
def same_as_input(i: int = 0):
    """infer: output has the type of input i."""
    return lambda *types, **attrs: types[i]


def broadcast_shapes(*shapes) -> tuple:
    """numpy/ONNX multidirectional broadcast; ShapeError when shapes disagree."""
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ShapeError(f"shapes {' , '.join(map(str, shapes))} do not broadcast") from None


def broadcast_infer(out_dtype: str | None = None):
    """infer for n-ary broadcasting ops over one dtype; output dtype = the inputs' unless given."""
    def infer(*types, **attrs):
        if len({t.dtype for t in types}) > 1:
            raise ShapeError(f"input dtypes differ: {', '.join(t.dtype for t in types)}")
        return TensorType(out_dtype or types[0].dtype, broadcast_shapes(*(t.shape for t in types)))
    return infer
