"""The `fuse-layers` passes: chains of consecutive convs (with their fused bias/Relu and a
trailing MaxPool) become one FusedLayerConv node, computed strip by strip so that the
intermediate feature maps stay in the L2 cache (Alwani et al., MICRO 2016).

    %a = Conv(%x, %w1, %b1) {activation="Relu", pads=[1,1,1,1]}
    %c = Conv(%a, %w2, %b2) {activation="Relu", pads=[1,1,1,1]}       =>   %p = FusedLayerConv(%x, %w1, %b1, %w2, %b2)
    %p = MaxPool(%c) {kernel_shape=[2,2], strides=[2,2]}                      {tile_rows=..., ...}

The choice (cost model): a strip of `tile_rows` output rows needs its pyramid of rows of
every layer (halo rows recomputed, see ir/ops/fused.py). Its working set is the strip
buffers plus the group's weights. Among the strip heights whose working set fits the L2
cache of one core, the one saving the most is taken: the intermediates' memory traffic
avoided minus the extra time of the fused kernel (recomputed halo FLOPs, and its lower
FLOP rate than the tuned single-conv kernels). A chain (longest prefix first) is fused only
when that saving is positive and its intermediates would not fit L2 unfused. On this
2-core machine (32 MiB L3) that leaves the light zoo unfused: the convs are compute bound.

`fuse-layers` (CLI `--fuse-layers auto`) fuses up to 3 convs per group where that model
expects a saving; `fuse-layers-2` / `fuse-layers-3` (`--fuse-layers 2|3`) fuse every chain
of up to that many convs, the strip height still chosen by the model.
"""
from __future__ import annotations

from ...ir import get_op
from ...ir.ops.fused import FUSED_LAYER_ACTIVATIONS, layer_types, tile_row_extents
from ..manager import register_pass
from .elementwise import rename_outputs

MAX_DEPTH = 3
DEFAULT_L2_BYTES = 512 * 1024


def l2_cache_bytes() -> int:
    """L2 cache of one core (Linux sysfs), DEFAULT_L2_BYTES when it cannot be read."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index2/size") as f:
            text = f.read().strip()
        return int(text[:-1]) * {"K": 1024, "M": 1024 ** 2}[text[-1]]
    except (OSError, ValueError, KeyError, IndexError):
        return DEFAULT_L2_BYTES


def _fusable_conv(node) -> bool:
    a = node.attrs
    return (node.op == "Conv" and a["group"] == 1 and tuple(a["dilations"]) == (1, 1)
            and len(node.inputs) in (2, 3) and all(v.is_constant for v in node.inputs[1:])
            and a["activation"] in FUSED_LAYER_ACTIVATIONS and node.outputs[0].type.dtype == "float32")


def _fusable_pool(node) -> bool:
    a = node.attrs
    return (node.op == "MaxPool" and not any(a["pads"]) and tuple(a["dilations"]) == (1, 1)
            and not a["ceil_mode"] and node.outputs[0].type.dtype == "float32")


def _sole_user(value, users, outputs):
    """The one node using `value`, or None (several users, none, or a graph output)."""
    us = users.get(value.name, [])
    return us[0] if len(us) == 1 and value.name not in outputs and us[0].inputs[0] is value else None


def conv_chains(graph, depth: int) -> list:
    """Maximal chains [conv, conv, ..., (maxpool)] of up to `depth` fusable convs, each
    intermediate used only by the next layer, in graph order, disjoint."""
    users, outputs = graph.users(), {v.name for v in graph.outputs}
    taken, chains = set(), []
    for node in graph.nodes:
        if node.name in taken or not _fusable_conv(node):
            continue
        chain = [node]
        while len(chain) < depth:
            nxt = _sole_user(chain[-1].outputs[0], users, outputs)
            if nxt is None or not _fusable_conv(nxt):
                break
            chain.append(nxt)
        if len(chain) < 2:
            continue
        pool = _sole_user(chain[-1].outputs[0], users, outputs)
        if pool is not None and _fusable_pool(pool):
            chain.append(pool)
        taken.update(n.name for n in chain)
        chains.append(chain)
    return chains


def layer_attrs(chain, tile_rows: int) -> dict:
    """FusedLayerConv attributes for `chain`."""
    convs = [n for n in chain if n.op == "Conv"]
    attrs = {"strides": [s for n in convs for s in n.attrs["strides"]],
             "pads": [p for n in convs for p in n.attrs["pads"]],
             "activations": ",".join(n.attrs["activation"] for n in convs), "tile_rows": tile_rows}
    if chain[-1].op == "MaxPool":
        attrs.update(pool_kernel=chain[-1].attrs["kernel_shape"], pool_strides=chain[-1].attrs["strides"])
    return get_op("FusedLayerConv").check_attrs(attrs, chain[0].name)


def _input_types(chain) -> list:
    """x, then (w, b) per conv, as TensorTypes (a missing bias as a zero bias)."""
    from ...ir.types import TensorType

    types = [chain[0].inputs[0].type]
    for n in chain:
        if n.op == "Conv":
            w = n.inputs[1].type
            types += [w, TensorType(w.dtype, (w.shape[0],))]
    return types


def strip_working_set(chain, tile_rows: int) -> int:
    """Bytes one strip touches: its input rows, every layer's pyramid rows (full width,
    padding included) and all the group's weights."""
    types, attrs = _input_types(chain), layer_attrs(chain, tile_rows)
    extents = tile_row_extents(types, attrs)
    outs = layer_types(types, attrs)
    x = types[0]
    total = x.shape[1] * extents[0] * (x.shape[3] + 2 * max(attrs["pads"])) * 4
    for rows, t in zip(extents[1:], outs):
        total += t.shape[1] * rows * (t.shape[3] + 2 * max(attrs["pads"])) * 4
    return total + sum(t.nbytes for t in types[1:])


def recompute_fraction(chain, tile_rows: int) -> float:
    """Extra FLOPs of the fused group over the unfused convs (halo rows computed twice)."""
    types, attrs = _input_types(chain), layer_attrs(chain, tile_rows)
    fused = get_op("FusedLayerConv").cost(types, layer_types(types, attrs)[-1:], attrs).flops
    plain = sum(get_op("Conv").cost([v.type for v in n.inputs], [n.outputs[0].type], n.attrs).flops
                for n in chain if n.op == "Conv")
    return fused / plain - 1


def estimated_saving(chain, tile_rows: int, target) -> float:
    """Seconds fusing should save: the intermediates' traffic (each written and read back
    once at memory bandwidth) plus the convs' time at the direct conv's rate, minus the fused
    FLOPs (halo recomputation included) at the fused kernel's lower rate."""
    from ...codegen.conv2d import EFFICIENCY_DIRECT
    from ...codegen.conv2d_fused_layer import EFFICIENCY_FUSED_LAYER

    traffic = 2 * sum(n.outputs[0].type.nbytes for n in chain[:-1]) / target.memory_bandwidth
    plain = sum(get_op("Conv").cost([v.type for v in n.inputs], [n.outputs[0].type], n.attrs).flops
                for n in chain if n.op == "Conv")
    fused = plain * (1 + recompute_fraction(chain, tile_rows))
    return (traffic + plain / (EFFICIENCY_DIRECT * target.peak_flops)
            - fused / (EFFICIENCY_FUSED_LAYER * target.peak_flops))


def choose_tile_rows(chain, l2_bytes: int, force: bool = False, target=None) -> int | None:
    """The strip height (rows of the final output) whose strip fits L2 and saves the most
    (`estimated_saving`); None when nothing is saved, or when the intermediates fit L2
    unfused anyway (no memory traffic to save). `force`: always a height, the one with the
    smallest working set when no strip fits."""
    from ...codegen.kernel import CpuTarget

    target = target or CpuTarget.host()
    intermediates = sum(n.outputs[0].type.nbytes for n in chain[:-1])
    if intermediates <= l2_bytes and not force:
        return None
    heights = range(1, chain[-1].outputs[0].type.shape[2] + 1)
    fits = [r for r in heights if strip_working_set(chain, r) <= l2_bytes]
    if not fits:
        return min(heights, key=lambda r: strip_working_set(chain, r)) if force else None
    best = max(fits, key=lambda r: (estimated_saving(chain, r, target), r))
    return best if force or estimated_saving(chain, best, target) > 0 else None


def fuse_layers(graph, depth: int = MAX_DEPTH, l2_bytes: int | None = None, force: bool = False):
    """Replace conv chains of up to `depth` layers by FusedLayerConv nodes.

    Args:
        graph: the ir.Graph (not modified).
        depth: most convs per group.
        l2_bytes: the cache a strip must fit (default: this machine's L2 per core).
        force: fuse every chain found (strip height still from the cost model); else only
            where the cost model expects a saving (see module doc).
    Returns:
        the new graph.
    """
    g = graph.copy()
    l2 = l2_bytes or l2_cache_bytes()
    renames = []
    for chain in conv_chains(g, depth):
        # the whole chain, else shorter prefixes (a deep pyramid may not fit L2)
        for cut in range(len(chain), 1, -1):
            part = chain[:cut]
            if part[-1].op == "MaxPool" and cut == 2:
                break
            rows = choose_tile_rows(part, l2, force)
            if rows is not None:
                renames += _replace(g, part, rows)
                break
    g.toposort()
    g.remove_dead()
    rename_outputs(renames)
    return g


def _replace(g, chain, tile_rows: int) -> list:
    """Add the FusedLayerConv for `chain` and use it; [(new value, name to keep)] for a graph output."""
    import numpy as np

    inputs = [chain[0].inputs[0]]
    for n in chain:
        if n.op == "Conv":
            w = n.inputs[1]
            bias = n.inputs[2] if len(n.inputs) > 2 else g.constant(np.zeros(w.type.shape[0], w.type.dtype), "bias")
            inputs += [w, bias]
    old = chain[-1].outputs[0]
    new = g.add_node("FusedLayerConv", inputs, layer_attrs(chain, tile_rows), name=f"fused_{chain[0].name}")[0]
    g.replace_all_uses(old, new)
    return [(new, old.name)] if any(o is new for o in g.outputs) else []


@register_pass("fuse-layers")
def fuse_layers_auto(graph):
    """Fuse conv chains (up to 3 convs, +MaxPool) where the cost model expects less traffic."""
    return fuse_layers(graph, MAX_DEPTH)


@register_pass("fuse-layers-2")
def fuse_layers_2(graph):
    """Fuse every chain of 2 convs (+MaxPool) into a strip-by-strip FusedLayerConv."""
    return fuse_layers(graph, 2, force=True)


@register_pass("fuse-layers-3")
def fuse_layers_3(graph):
    """Fuse every chain of up to 3 convs (+MaxPool) into a strip-by-strip FusedLayerConv."""
    return fuse_layers(graph, 3, force=True)
