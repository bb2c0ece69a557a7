"""The `fuse-layers` passes: chains of consecutive convs (with their fused bias/Relu and a
trailing MaxPool) become one FusedLayerConv node, computed strip by strip so that the
intermediate feature maps stay in the L2 cache (Alwani et al., MICRO 2016).

    %a = Conv(%x, %w1, %b1) {activation="Relu", pads=[1,1,1,1]}
    %c = Conv(%a, %w2, %b2) {activation="Relu", pads=[1,1,1,1]}       =>   %p = FusedLayerConv(%x, %w1, %b1, %w2, %b2)
    %p = MaxPool(%c) {kernel_shape=[2,2], strides=[2,2]}                      {tile_rows=..., ...}

The choice (cost model): a strip of `tile_rows` output rows needs its pyramid of rows of
every layer in per-task line buffers (ir/ops/fused.py); its working set is those buffers
plus the group's weights. The strips of an image are split into one band per core, and
the halo rows two strips share are reused within a band (or recomputed: `halo`). Among the
(strip height, halo) pairs whose working set fits the L2 cache of one core, the one the
codegen estimates fastest is taken, and a chain (longest prefix first) is fused only when
that beats the codegen's estimate for its nodes unfused, which may use Winograd for 3x3
convs, and when its intermediates would not fit L2 unfused. The fused kernel is a direct
conv: it outruns the unfused direct convs, but not Winograd where the intermediates fit
the 32 MiB L3 of this 2-core machine, so `auto` leaves the light zoo unfused
(benchmarks/fusion.py).

`fuse-layers` (CLI `--fuse-layers auto`) fuses up to 3 convs per group where that model
expects a saving; `fuse-layers-2` / `fuse-layers-3` (`--fuse-layers 2|3`) fuse every chain
of up to that many convs, the strip height still chosen by the model.
"""
from __future__ import annotations

from ...ir import get_op
from ...ir.ops.fused import FUSED_LAYER_ACTIVATIONS, HALO_MODES, layer_types, tile_row_extents
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


def layer_attrs(chain, tile_rows: int, bands: int = 1, halo: str = "reuse") -> dict:
    """FusedLayerConv attributes for `chain`."""
    convs = [n for n in chain if n.op == "Conv"]
    attrs = {"strides": [s for n in convs for s in n.attrs["strides"]],
             "pads": [p for n in convs for p in n.attrs["pads"]],
             "activations": ",".join(n.attrs["activation"] for n in convs), "tile_rows": tile_rows,
             "bands": bands, "halo": halo}
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


def recompute_fraction(chain, tile_rows: int, bands: int = 1, halo: str = "reuse") -> float:
    """Extra FLOPs of the fused group over the unfused convs (halo rows computed twice)."""
    types, attrs = _input_types(chain), layer_attrs(chain, tile_rows, bands, halo)
    fused = get_op("FusedLayerConv").cost(types, layer_types(types, attrs)[-1:], attrs).flops
    plain = sum(get_op("Conv").cost([v.type for v in n.inputs], [n.outputs[0].type], n.attrs).flops
                for n in chain if n.op == "Conv")
    return fused / plain - 1


def unfused_seconds(chain, target) -> float:
    """The codegen's estimate for the chain's nodes each lowered alone: per node, the time of
    the rule it would choose (Winograd for most 3x3 convs), memory traffic included."""
    from ...codegen.kernel import LowerNode
    from ...codegen.rules import select

    return sum(min(est for _, est, _ in select(LowerNode.of(n, target)).candidates) for n in chain)


def fused_seconds(chain, attrs: dict, target) -> float:
    """The codegen's estimate for the FusedLayerConv of `chain` with `attrs` (its registry
    cost: the FLOPs of the rows it computes, and x, weights and output as its only traffic),
    without building the kernel."""
    from ...codegen.kernel import Kernel, KernelInput, LowerNode
    from ...codegen.rules import estimate_seconds, rules_for

    types = _input_types(chain)
    n = LowerNode("FusedLayerConv", chain[0].name, attrs, [KernelInput(t) for t in types],
                  layer_types(types, attrs)[-1:], target)
    fused_rule = next(r for r in rules_for(target)["FusedLayerConv"] if r.family == "fused-layer")
    return estimate_seconds(n, fused_rule, Kernel(None, []))


def choose_tiling(chain, l2_bytes: int, force: bool = False, target=None, halos=HALO_MODES) -> tuple | None:
    """(strip height, halo mode) whose strip fits L2 and whose fused kernel the codegen
    expects fastest (`fused_seconds`, one band per core; reuse computes fewer rows with the
    same line buffers, and wins ties); None when that is not faster
    than the nodes unfused (`unfused_seconds`), or when the intermediates fit L2 unfused
    anyway (no memory traffic to save). `force`: always a tiling, the smallest working set
    when no strip fits. `halos`: the modes to choose from."""
    from ...codegen.kernel import CpuTarget

    target = target or CpuTarget.host()
    intermediates = sum(n.outputs[0].type.nbytes for n in chain[:-1])
    if intermediates <= l2_bytes and not force:
        return None
    heights = range(1, chain[-1].outputs[0].type.shape[2] + 1)
    fits = [r for r in heights if strip_working_set(chain, r) <= l2_bytes]
    if not fits:
        return (min(heights, key=lambda r: strip_working_set(chain, r)), halos[-1]) if force else None
    seconds = {(r, h): fused_seconds(chain, layer_attrs(chain, r, target.num_cores, h), target)
               for r in fits for h in halos}
    best = min(seconds, key=lambda rh: (seconds[rh], -rh[0], rh[1] != "reuse"))
    return best if force or seconds[best] < unfused_seconds(chain, target) else None


def fuse_layers(graph, depth: int = MAX_DEPTH, l2_bytes: int | None = None, force: bool = False,
                halo: str | None = None):
    """Replace conv chains of up to `depth` layers by FusedLayerConv nodes.

    Args:
        graph: the ir.Graph (not modified).
        depth: most convs per group.
        l2_bytes: the cache a strip must fit (default: this machine's L2 per core).
        force: fuse every chain found (tiling still from the cost model); else only where
            the cost model expects a saving (see module doc).
        halo: this halo mode ("recompute" or "reuse") rather than the cost model's choice.
    Returns:
        the new graph.
    """
    from ...codegen.kernel import CpuTarget

    g = graph.copy()
    l2 = l2_bytes or l2_cache_bytes()
    bands = CpuTarget.host().num_cores
    renames = []
    for chain in conv_chains(g, depth):
        # the whole chain, else shorter prefixes (a deep pyramid may not fit L2)
        for cut in range(len(chain), 1, -1):
            part = chain[:cut]
            if part[-1].op == "MaxPool" and cut == 2:
                break
            tiling = choose_tiling(part, l2, force, halos=(halo,) if halo else HALO_MODES)
            if tiling is not None:
                renames += _replace(g, part, layer_attrs(part, tiling[0], bands, tiling[1]))
                break
    g.toposort()
    g.remove_dead()
    rename_outputs(renames)
    return g


def _replace(g, chain, attrs: dict) -> list:
    """Add the FusedLayerConv for `chain` and use it; [(new value, name to keep)] for a graph output."""
    import numpy as np

    inputs = [chain[0].inputs[0]]
    for n in chain:
        if n.op == "Conv":
            w = n.inputs[1]
            bias = n.inputs[2] if len(n.inputs) > 2 else g.constant(np.zeros(w.type.shape[0], w.type.dtype), "bias")
            inputs += [w, bias]
    old = chain[-1].outputs[0]
    new = g.add_node("FusedLayerConv", inputs, attrs, name=f"fused_{chain[0].name}")[0]
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
