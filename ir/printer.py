"""The text form of a Graph: one SSA line per node, parsed back by ir/parser.py.

    graph resnet(%x: float32[1,3,224,224]) {
      %w = const float32[64,3,7,7] <elided>
      %b = const float32[2] [0.5, -1.0]
      %conv1 = Conv(%x, %w, %b) {strides=[2,2], pads=[3,3,3,3], dilations=[1,1], group=1}
      %a, %b2 = Split(%conv1) {axis=1, split=[32,32]}
      return %a, %b2
    }

Constants come first, in first-use order. A constant is written as a flat list of its
values (shortest text that reads back to the same number), as `b64"..."` (its raw
little-endian bytes) or as `<elided>`; names that are not plain identifiers are quoted.
"""
from __future__ import annotations

import base64
import json
import re

import numpy as np

#: constants up to this many elements are written as a list even when nothing is elided
INLINE_LIST_LIMIT = 16
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.]+\Z")


def quote_name(name: str) -> str:
    """A name as written in the text form: bare if it is a plain identifier, else JSON-quoted."""
    return name if _PLAIN_NAME.match(name) else json.dumps(name)


def format_scalar(value) -> str:
    """Shortest text that reads back to exactly `value` (numpy scalar or Python number)."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        text = str(value) if isinstance(value, np.floating) else repr(value)
        # keep a float recognisable as one (and distinct from an int) when read back
        return text if any(c in text for c in ".eni") else text + ".0"
    return str(int(value))


def _format_attr(value) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (tuple, list)):
        return "[" + ",".join(format_scalar(v) for v in value) + "]"
    return format_scalar(value)


def format_constant(data: np.ndarray, max_const_elems: int | None) -> str:
    """The value part of a `const` line."""
    limit = INLINE_LIST_LIMIT if max_const_elems is None else max_const_elems
    if data.size <= limit:
        return "[" + ", ".join(format_scalar(v) for v in data.reshape(-1)) + "]"
    if max_const_elems is None:
        raw = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<")).tobytes()
        return 'b64"' + base64.b64encode(raw).decode("ascii") + '"'
    return "<elided>"


def print_graph(graph, *, max_const_elems: int | None = 16, types: bool = False) -> str:
    """The text form of `graph`.

    Args:
        graph: an ir.Graph.
        max_const_elems: constants with at most this many elements are written inline,
            larger ones as `<elided>`; None writes every constant (big ones as base64), so
            the text alone parses back to an identical graph.
        types: also write each node output's type (`%y: float32[1,8] = ...`).
    Returns:
        the text, ending with a newline.
    """
    params = ", ".join(f"%{quote_name(v.name)}: {v.type}" for v in graph.inputs)
    lines = [f"graph {quote_name(graph.name)}({params}) {{"]
    for v in graph.constants:
        lines.append(f"  %{quote_name(v.name)} = const {v.type} "
                     f"{format_constant(v.data, max_const_elems)}")
    for node in graph.nodes:
        outs = ", ".join(f"%{quote_name(v.name)}" + (f": {v.type}" if types else "")
                         for v in node.outputs)
        args = ", ".join(f"%{quote_name(v.name)}" for v in node.inputs)
        attrs = ", ".join(f"{k}={_format_attr(v)}" for k, v in node.attrs.items())
        lines.append(f"  {outs} = {node.op}({args})" + (f" {{{attrs}}}" if attrs else ""))
    returns = ", ".join(f"%{quote_name(v.name)}" for v in graph.outputs)
    lines.append(f"  return {returns}".rstrip())
    lines.append("}")
    return "\n".join(lines) + "\n"
