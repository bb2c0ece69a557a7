"""NCHW{b}c layout propagation: which values are stored channel-blocked, and the kernels that
convert between layouts.

The fast convs compute in NCHW{b}c (b = the SIMD width: one vector of channels per pixel).
Storing a conv's output blocked lets the next conv read it without repacking, and the
ops between two convs run on it as they are: elementwise ops whose inputs all have the
output's shape, the pools, and Concat along the channels (every part a multiple of b
channels). `assign_blocks` decides, per value, whether it is stored blocked:

1. candidates: rank-4 float32 run-time values with a multiple of b channels, produced by a
   Conv (plain or depthwise) or by one of the ops above;
2. repeated until nothing changes, a candidate is dropped when an op above has an input that
   is not blocked, or when no consumer reads it blocked (a conv writing NCHW directly costs
   nothing, a separate transform a pass over the tensor) unless it is a pool's output, which
   is smaller than its input: converting it is cheaper than converting the input.

cpu.py lowers each node in the layouts chosen and inserts a `layout_transform` kernel
wherever a value is stored in another layout than its consumer's kernel reads (graph
outputs are always NCHW), so a rule that ignores layouts stays correct.
"""
from __future__ import annotations

from .kernel import Kernel, LowerNode, blocked_shape
from .rules import make_kernel

POOLS = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool")


def _elementwise_ops() -> set:
    from .elementwise import ELEMENTWISE, VARIADIC

    return set(ELEMENTWISE) | set(VARIADIC)


def conv_reads_blocks(node) -> bool:
    """A float32 Conv that the blocked conv rules lower (one group, or depthwise)."""
    g, c = node.attrs["group"], node.inputs[0].type.shape[1]
    return node.outputs[0].type.dtype == "float32" and (g == 1 or g == c == node.outputs[0].type.shape[1])


def runs_blocked(node) -> bool:
    """An op that runs on blocked tensors as if they were its own 5-D inputs (not a Conv)."""
    if node.op in POOLS:
        return True
    if node.op == "Concat":
        return node.attrs["axis"] == 1  # the channel blocks: axis 1 of the 5-D tensors too
    return (node.op in _elementwise_ops() or node.op == "FusedElementwise") and \
        all(v.type.shape == node.outputs[0].type.shape for v in node.inputs)


def _candidate(v, block: int) -> bool:
    t = v.type
    return not v.is_constant and t.rank == 4 and t.dtype == "float32" and t.shape[1] % block == 0


def assign_blocks(graph, block: int) -> dict:
    """Which values are stored NCHW{block}c (see the module doc).

    Args:
        graph: the ir.Graph to lower.
        block: channels per block (the target's SIMD lanes).
    Returns:
        value name -> block, for the blocked values only.
    """
    users: dict = {}
    for node in graph.nodes:
        for i, v in enumerate(node.inputs):
            users.setdefault(v.name, []).append((node, i))
    blocked = {node.outputs[0].name: node for node in graph.nodes
               if len(node.outputs) == 1 and _candidate(node.outputs[0], block)
               and (runs_blocked(node) or (node.op == "Conv" and conv_reads_blocks(node)))}

    def read_blocked(node, i) -> bool:
        if node.op == "Conv":
            return i in (0, 3) and conv_reads_blocks(node)
        return node.outputs[0].name in blocked

    changed = True
    while changed:
        changed = False
        for name, node in list(blocked.items()):
            inputs_ok = node.op == "Conv" or all(v.name in blocked for v in node.inputs)
            shrinks = node.op in POOLS and node.outputs[0].type.numel < node.inputs[0].type.numel
            if not inputs_ok or not (shrinks or any(read_blocked(u, i) for u, i in users.get(name, ()))):
                del blocked[name]
                changed = True
    return {name: block for name in blocked}


def layout_name(shape, block: int) -> str:
    """"NCHW16c" for a block, else the plain layout name of a rank-`len(shape)` tensor."""
    return f"NCHW{block}c" if block else ("NCHW" if len(shape) == 4 else f"rank-{len(shape)}")


def layout_transform(n: LowerNode, src_block: int, dst_block: int) -> Kernel:
    """A kernel copying the rank-4 value n.inputs[0] from NCHW{src_block}c to NCHW{dst_block}c
    (0 = plain NCHW), parallel over (batch, channel block, row), vectorized along the row."""
    from tvm import te

    t = n.inputs[0].type
    n_, c, h, w = t.shape
    x = te.placeholder(blocked_shape(t.shape, src_block) if src_block else t.shape, t.dtype, "x")
    read = (lambda b, ch, y, xx: x[b, ch // src_block, y, xx, ch % src_block]) if src_block else \
        (lambda b, ch, y, xx: x[b, ch, y, xx])
    if dst_block:
        out = te.compute(blocked_shape(t.shape, dst_block),
                         lambda b, co, y, xx, ci: read(b, co * dst_block + ci, y, xx), name="relayout")
    else:
        out = te.compute(t.shape, read, name="relayout")

    def schedule(sch):
        loops = sch.get_loops(sch.get_sblock("relayout"))
        sch.parallel(sch.fuse(*loops[:3]))
        if int(sch.get(loops[-1]).extent) % n.target.vector_lanes == 0:
            sch.vectorize(sch.split(loops[-1], [None, n.target.vector_lanes])[1])

    kernel = make_kernel([x], [out], schedule, [0],
                         f"layout {layout_name(t.shape, src_block)} -> {layout_name(t.shape, dst_block)}")
    kernel.in_blocks, kernel.out_block = (src_block,), dst_block
    return kernel
