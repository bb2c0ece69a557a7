"""Fused ops made by passes/fuse: each one is defined as the composition of registry ops,
so its inference and numpy reference are those ops' own, applied in order.

FusedElementwise evaluates an expression over its inputs in one pass, e.g.
`Relu(Add($0,Clip{min=0.0,max=6.0}($1)))`: `$i` is input i, `Op{attr=value,...}(args)`
applies the registered elementwise op `Op` with those attributes.

FusedLayerConv is a chain of 2-3 Convs (group 1, no dilation) optionally ended by a
MaxPool without padding, computed tile by tile (Alwani et al., MICRO 2016): inputs are
x then (w, b) per conv; the per-layer attributes are flattened, one entry (or 2 / 4) per
layer. The final output is cut into strips of `tile_rows` rows, each computed from its
pyramid of rows of every layer (`strip_windows`). The strips are split into `bands`
contiguous runs per image, one parallel task each, walked in order. `halo` says what
happens to the rows two neighbouring pyramids share:

    halo="recompute"  every strip computes its whole pyramid (shared rows computed twice);
    halo="reuse"      a strip keeps the rows the previous strip of its band computed (line
                      buffers) and computes only its new rows: shared rows are computed
                      twice only at band boundaries.

`tile_rows`, `bands` and `halo` change the cost, not the result.
"""
from __future__ import annotations

import re

from ...errors import ShapeError
from ..registry import REQUIRED, Cost, get_op, register
from .common import require_float

# -- FusedElementwise ----------------------------------------------------------------------
_TOKEN = re.compile(r"\s*(?:(?P<input>\$\d+)|(?P<name>[A-Za-z]\w*)|(?P<punct>[(){},=])|(?P<value>[^\s(){},=]+))")


def _tokens(expr: str) -> list:
    out, pos = [], 0
    while pos < len(expr.rstrip()):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise ShapeError(f"FusedElementwise expression {expr!r}: cannot read from {expr[pos:]!r}")
        out.append((m.lastgroup, m.group(m.lastgroup)))
        pos = m.end()
    return out


def parse_expression(expr: str):
    """The expression tree of a FusedElementwise `expr`: an int (input index) or a tuple
    (op, attrs dict of strings, [argument trees]). ShapeError on bad syntax."""
    toks = _tokens(expr)
    pos = 0

    def expect(kind, text=None):
        nonlocal pos
        if pos >= len(toks) or toks[pos][0] != kind or (text is not None and toks[pos][1] != text):
            got = toks[pos][1] if pos < len(toks) else "end"
            raise ShapeError(f"FusedElementwise expression {expr!r}: expected {text or kind}, got {got!r}")
        pos += 1
        return toks[pos - 1][1]

    def peek(text):
        return pos < len(toks) and toks[pos] == ("punct", text)

    def term():
        nonlocal pos
        if pos < len(toks) and toks[pos][0] == "input":
            pos += 1
            return int(toks[pos - 1][1][1:])
        op, attrs = expect("name"), {}
        if peek("{"):
            expect("punct", "{")
            while not peek("}"):
                key = expect("name")
                expect("punct", "=")
                attrs[key] = expect("value") if toks[pos][0] == "value" else expect("name")
                if not peek("}"):
                    expect("punct", ",")
            expect("punct", "}")
        expect("punct", "(")
        args = [term()]
        while peek(","):
            expect("punct", ",")
            args.append(term())
        expect("punct", ")")
        return op, attrs, args

    tree = term()
    if pos != len(toks):
        raise ShapeError(f"FusedElementwise expression {expr!r}: unexpected {toks[pos][1]!r}")
    return tree


def format_expression(tree) -> str:
    """The text form of an expression tree (inverse of `parse_expression`)."""
    if isinstance(tree, int):
        return f"${tree}"
    op, attrs, args = tree
    attr_text = "{" + ",".join(f"{k}={v!r}" if not isinstance(v, str) else f"{k}={v}"
                               for k, v in attrs.items()) + "}" if attrs else ""
    return f"{op}{attr_text}(" + ",".join(format_expression(a) for a in args) + ")"


def evaluate(tree, inputs: list, apply):
    """Fold an expression tree bottom-up: `apply(op, attrs, values)` for each op node,
    `inputs[i]` for `$i`. Used for types (inference), arrays (reference) and TIR (codegen)."""
    if isinstance(tree, int):
        if not 0 <= tree < len(inputs):
            raise ShapeError(f"FusedElementwise expression reads ${tree} but has {len(inputs)} inputs")
        return inputs[tree]
    op, attrs, args = tree
    return apply(op, attrs, [evaluate(a, inputs, apply) for a in args])


def checked_attrs(op: str, attrs: dict) -> dict:
    """The registry's normalized attributes of `op` from their text values."""
    return get_op(op).check_attrs(attrs, f"FusedElementwise step {op}")


def _fused_infer(*types, expr):
    def infer(op, attrs, ts):
        return get_op(op).infer_types(ts, checked_attrs(op, attrs), f"FusedElementwise step {op}")[0]
    out = evaluate(parse_expression(expr), list(types), infer)
    require_float(out, "FusedElementwise output")
    return out


@register("FusedElementwise", inputs=(1, None), attrs={"expr": ("str", REQUIRED)}, infer=_fused_infer)
def fused_elementwise(*xs, expr):
    """The elementwise expression `expr` over the inputs, each step by its registry reference."""
    def run(op, attrs, arrays):
        return get_op(op).run(arrays, checked_attrs(op, attrs))[0]
    return evaluate(parse_expression(expr), list(xs), run)


# -- FusedLayerConv ------------------------------------------------------------------------
FUSED_LAYER_ACTIVATIONS = ("", "Relu")  # the conv activations the fused-layer kernel computes
HALO_MODES = ("recompute", "reuse")
_LAYER_ATTRS = {"strides": ("ints", REQUIRED), "pads": ("ints", REQUIRED), "activations": ("str", REQUIRED),
                "pool_kernel": ("ints", ()), "pool_strides": ("ints", ()), "tile_rows": ("int", 1),
                "bands": ("int", 1), "halo": ("str", "reuse")}


def layer_steps(n_convs: int, attrs: dict) -> list:
    """The chain as [(op, attrs)] in the registry's own terms: Conv per layer, then MaxPool."""
    acts = attrs["activations"].split(",")
    if not set(acts) <= set(FUSED_LAYER_ACTIVATIONS):
        raise ShapeError(f"FusedLayerConv activations {acts} must be among {list(FUSED_LAYER_ACTIVATIONS)}")
    if len(attrs["strides"]) != 2 * n_convs or len(attrs["pads"]) != 4 * n_convs or len(acts) != n_convs:
        raise ShapeError(f"FusedLayerConv with {n_convs} convs needs 2 strides, 4 pads and one "
                         f"activation per conv, got strides {list(attrs['strides'])}, pads "
                         f"{list(attrs['pads'])}, activations {acts}")
    steps = [("Conv", {"strides": attrs["strides"][2 * i:2 * i + 2], "pads": attrs["pads"][4 * i:4 * i + 4],
                       "activation": acts[i]}) for i in range(n_convs)]
    if attrs["pool_kernel"]:
        steps.append(("MaxPool", {"kernel_shape": attrs["pool_kernel"], "strides": attrs["pool_strides"]}))
    return steps


def _chain(ins, attrs, step_fn):
    """Fold `step_fn(op, attrs, inputs)` over the chain; ins = x, then (w, b) per conv."""
    if len(ins) % 2 == 0 or len(ins) < 5:
        raise ShapeError(f"FusedLayerConv takes x and (w, b) for 2 or more convs, got {len(ins)} inputs")
    value = ins[0]
    for i, (op, step_attrs) in enumerate(layer_steps(len(ins) // 2, attrs)):
        operands = [value] + (list(ins[1 + 2 * i:3 + 2 * i]) if op == "Conv" else [])
        value = step_fn(op, get_op(op).check_attrs(step_attrs, f"FusedLayerConv layer {i}"), operands)
    return value


def _layer_infer(*types, **attrs):
    if attrs["tile_rows"] < 1 or attrs["bands"] < 1:
        raise ShapeError(f"tile_rows and bands must be positive, got {attrs['tile_rows']} and {attrs['bands']}")
    if attrs["halo"] not in HALO_MODES:
        raise ShapeError(f"FusedLayerConv halo must be one of {list(HALO_MODES)}, got {attrs['halo']!r}")
    return _chain(types, attrs, lambda op, a, ts: get_op(op).infer_types(ts, a, f"FusedLayerConv {op}")[0])


def layer_types(in_types, attrs) -> list:
    """The output type of every layer of the chain (convs, then the pool)."""
    out = []

    def step(op, a, ts):
        out.append(get_op(op).infer_types(ts, a, f"FusedLayerConv {op}")[0])
        return out[-1]
    _chain(in_types, attrs, step)
    return out


def layer_windows(in_types, attrs) -> list:
    """(rows of the window, row stride) per layer: each conv, then the pool."""
    n_convs = len(in_types) // 2
    wins = [(in_types[1 + 2 * i].shape[2], attrs["strides"][2 * i]) for i in range(n_convs)]
    if attrs["pool_kernel"]:
        wins.append((attrs["pool_kernel"][0], attrs["pool_strides"][0]))
    return wins


def tile_row_extents(in_types, attrs) -> list:
    """The pyramid of one tile: rows of the chain's input, then of each layer's output, that
    `tile_rows` rows of the final output need (halo included); the last entry is tile_rows."""
    rows = [attrs["tile_rows"]]
    for k, s in reversed(layer_windows(in_types, attrs)):
        rows.append((rows[-1] - 1) * s + k)
    return rows[::-1]


def layer_row_geometry(in_types, attrs) -> list:
    """(window rows, row stride, top padding) per layer: each conv, then the pool."""
    tops = [attrs["pads"][4 * i] for i in range(len(in_types) // 2)]
    return [(k, s, top) for (k, s), top in zip(layer_windows(in_types, attrs), tops + [0])]


def strip_windows(t, tile_rows: int, out_rows: int, geometry: list, minimum=min) -> list:
    """[lo, hi) rows of x, then of every layer's output, that strip t of the final output
    needs (unpadded coordinates: rows < 0 or past the layer's height are its consumer's zero
    padding). `minimum` is min, or tirx.min when t is a loop variable."""
    lo, hi = t * tile_rows, minimum((t + 1) * tile_rows, out_rows)
    windows = [(lo, hi)]
    for k, s, top in reversed(geometry):
        lo, hi = lo * s - top, (hi - 1) * s - top + k
        windows.insert(0, (lo, hi))
    return windows


def strips_per_band(out_rows: int, attrs) -> int:
    """Strips each band walks (the last band may have fewer)."""
    strips = -(-out_rows // attrs["tile_rows"])
    return -(-strips // min(attrs["bands"], strips))


def computed_rows(in_types, attrs) -> list:
    """Rows of each layer's output the kernel computes per image: the rows inside the layer
    each strip computes (its whole window for halo="recompute" or the first strip of a band,
    else only the rows past the previous strip's window)."""
    layer_ts = layer_types(in_types, attrs)
    out_rows = layer_ts[-1].shape[2]
    geometry = layer_row_geometry(in_types, attrs)
    per_band = strips_per_band(out_rows, attrs)
    counts = [0] * len(layer_ts)
    for t in range(-(-out_rows // attrs["tile_rows"])):
        windows = strip_windows(t, attrs["tile_rows"], out_rows, geometry)[1:]
        first = attrs["halo"] == "recompute" or t % per_band == 0
        done = None if first else strip_windows(t - 1, attrs["tile_rows"], out_rows, geometry)[1:]
        for j, ((lo, hi), lt) in enumerate(zip(windows, layer_ts)):
            start = lo if first else max(lo, done[j][1])
            counts[j] += max(0, min(hi, lt.shape[2]) - max(start, 0))
    return counts


def _layer_cost(ins, outs, **attrs):
    """The convs' FLOPs for the rows the kernel computes (`computed_rows`: halo rows computed
    twice included); bytes: x, the weights and the output only (intermediates live in
    per-task line buffers meant to stay in cache)."""
    layer_ts = layer_types(ins, attrs)
    flops = 0
    for i, rows in enumerate(computed_rows(ins, attrs)[:len(ins) // 2]):
        w, t = ins[1 + 2 * i], layer_ts[i]
        flops += 2 * t.shape[1] * t.shape[3] * w.shape[1] * w.shape[2] * w.shape[3] * rows
    return Cost(flops, sum(t.nbytes for t in ins), sum(t.nbytes for t in outs))


@register("FusedLayerConv", inputs=(5, None), attrs=_LAYER_ATTRS, infer=_layer_infer, cost=_layer_cost)
def fused_layer_conv(*ins, **attrs):
    """Each Conv of the chain (then the MaxPool) by its registry reference, in order."""
    return _chain(ins, attrs, lambda op, a, xs: get_op(op).run(xs, a)[0])
