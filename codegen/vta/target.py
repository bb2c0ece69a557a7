"""The VTA target: place each node of a quantized graph on VTA or the CPU, lower the VTA layers to
instruction streams, build the CPU segments with the CPU backend, and assemble a VTAModel.

A QConv / QMatMul node in the power-of-two mode of ir/ops/quant.py (int8 in and out, zero points
0, multiplier 1, one shift 0..15, constant weights and bias, no groups or dilation, symmetric
padding) is exactly VTA's arithmetic (codegen/vta/reference.py), provided no int32 sum can wrap
(VTA folds the rounding term into the bias; the IR adds it in int64): that is checked from the
weights and bias. Everything else runs on the CPU, as in TVM's VTA flow. Consecutive CPU nodes
form one segment, compiled as one CPU module.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ...errors import UnsupportedError
from ...ir import Graph
from ...runtime.vta import DEFAULT_CONFIG, VTAConfig
from ...runtime.vta.module import CpuStep, VTAModel, VTAStep
from .conv2d import VTALayer, lower_conv2d

VTA_OPS = ("QConv", "QMatMul")


@dataclass
class Placement:
    """Where one node runs: its VTA layer, or the reason it stays on the CPU."""

    node: object  # ir.Node
    layer: VTALayer | None = None
    reason: str = ""

    @property
    def device(self) -> str:
        return "vta" if self.layer is not None else "cpu"


def lower_node(node, config: VTAConfig = DEFAULT_CONFIG, threads: int = 2) -> VTALayer:
    """The VTA layer of a QConv / QMatMul node.

    Raises:
        UnsupportedError naming the node, op and the attribute or input that VTA cannot run.
    """
    try:
        return _lower(node, config, threads)
    except UnsupportedError as e:
        raise UnsupportedError(f"node {node.name} ({node.op}): {e}") from None


def _lower(node, config: VTAConfig, threads: int) -> VTALayer:
    if node.op not in VTA_OPS:
        raise UnsupportedError(f"no VTA lowering (VTA runs {', '.join(VTA_OPS)})")
    a, (x, w), b = node.attrs, node.inputs[:2], (node.inputs[2] if len(node.inputs) > 2 else None)
    shifts = set(a["shift"])
    problems = [
        (x.type.dtype != "int8" or a["out_dtype"] != "int8",
         f"int8 in/out expected, got {x.type.dtype} -> {a['out_dtype']}"),
        (a["x_zero_point"] != 0 or a["out_zero_point"] != 0,
         f"zero points must be 0, got x {a['x_zero_point']}, out {a['out_zero_point']}"),
        (any(m != 1 for m in a["multiplier"]), "multiplier must be 1 (power-of-two scales)"),
        (len(shifts) != 1 or not 0 <= min(shifts) <= 15, f"one shift in 0..15 expected, got {sorted(shifts)}"),
        (not w.is_constant or (b is not None and not b.is_constant), "weights and bias must be constants"),
        (len(node.inputs) > 3, "residual input (VTA has no residual add)"),
    ]
    if node.op == "QConv":
        pads = a["pads"]
        problems += [(a["group"] != 1, f"group {a['group']} (only 1)"),
                     (tuple(a["dilations"]) != (1, 1), f"dilations {list(a['dilations'])} (only 1)"),
                     (pads[0] != pads[2] or pads[1] != pads[3], f"asymmetric pads {list(pads)}")]
    else:
        problems += [(x.type.rank != 2, f"input of rank {x.type.rank} (only 2-D)")]
    bad = [why for failed, why in problems if failed]
    if bad:
        raise UnsupportedError("; ".join(bad))
    shift = min(shifts)
    weight = w.data if node.op == "QConv" else w.data.T[:, :, None, None]
    bias = None if b is None else b.data.astype(np.int64)
    # the largest |int32 sum| any input can produce, plus the rounding term: must not wrap
    bound = 128 * np.abs(weight.astype(np.int64)).reshape(len(weight), -1).sum(1)
    bound = bound + (0 if bias is None else np.abs(bias)) + (1 << max(shift - 1, 0))
    if bound.max() >= 2**31:
        raise UnsupportedError(f"int32 sums may wrap (bound {int(bound.max())}); VTA's folded rounding would differ")
    relu = a["activation"] == "Relu"
    if node.op == "QConv":
        return lower_conv2d(x.type.shape, weight, bias, shift, relu, stride=tuple(a["strides"]),
                            padding=(a["pads"][0], a["pads"][1]), config=config, threads=threads)
    return lower_conv2d((*x.type.shape, 1, 1), weight, bias, shift, relu, config=config, threads=threads)


def place(graph, config: VTAConfig = DEFAULT_CONFIG, threads: int = 2) -> list[Placement]:
    """Place every node of `graph` (in order) on VTA when `lower_node` accepts it, else the CPU."""
    placements = []
    for node in graph.nodes:
        try:
            placements.append(Placement(node, layer=_lower(node, config, threads)))
        except UnsupportedError as e:
            placements.append(Placement(node, reason=str(e)))
    return placements


def layer_report(placements: list[Placement]) -> list[dict]:
    """Per node: where it runs and, for VTA layers, instructions, DRAM bytes moved, the counters,
    estimated cycles and GEMM utilisation (from one simulated run: timing does not depend on data)."""
    rows = []
    for p in placements:
        row = {"node": p.node.name, "op": p.node.op, "device": p.device}
        if p.layer is None:
            row["reason"] = p.reason
        else:
            k = p.layer.kernel
            _, stats = k.run(np.zeros(k.in_shape, np.int8))
            counters = stats.as_dict()
            row.update(instructions=len(k.program), tiles=len(p.layer.plan.tiles()),
                       channel_chunks=p.layer.plan.chunks, threads=p.layer.plan.threads,
                       bytes_moved=sum(v for key, v in counters.items() if key.endswith("_nbytes")),
                       **{key: v for key, v in counters.items() if key not in ("busy_cycles",)})
        rows.append(row)
    return rows


def format_report(rows: list[dict]) -> str:
    """The placement table `nnforge inspect --target vta` prints."""
    lines = [f"{'node':28s} {'op':16s} {'device':6s} {'insns':>7s} {'bytes moved':>12s} {'cycles':>10s} "
             f"{'gemm util':>9s}"]
    for r in rows:
        if r["device"] == "vta":
            lines.append(f"{r['node']:28s} {r['op']:16s} vta    {r['instructions']:7d} {r['bytes_moved']:12d} "
                         f"{r['cycles']:10d} {r['utilisation']:9.1%}")
        else:
            why = f"  ({r['reason']})" if r["op"] in VTA_OPS else ""
            lines.append(f"{r['node']:28s} {r['op']:16s} cpu{why}")
    vta = [r for r in rows if r["device"] == "vta"]
    lines.append(f"# {len(vta)} layers on VTA, {len(rows) - len(vta)} nodes on the CPU; "
                 f"{sum(r['cycles'] for r in vta)} estimated VTA cycles, "
                 f"{sum(r['bytes_moved'] for r in vta)} bytes moved")
    return "\n".join(lines)


def compile_vta(graph, compile_cpu, config: VTAConfig = DEFAULT_CONFIG, threads: int = 2, progress=None) -> VTAModel:
    """Compile a verified graph for VTA.

    Args:
        graph: the ir.Graph (quantized: its power-of-two QConv/QMatMul nodes go to VTA).
        compile_cpu: ir.Graph -> CompiledModel for a CPU segment (driver.compile_graph).
        config: VTA hardware configuration.
        threads: virtual threads (1 or 2).
        progress: optional callable taking status strings.
    Returns:
        a VTAModel (run, export).
    """
    placements = place(graph, config, threads)
    used_by = {}  # value name -> indices of the nodes reading it
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            used_by.setdefault(v.name, set()).add(i)
    outputs = {v.name for v in graph.outputs}
    constant_outputs = [v.name for v in graph.outputs if v.is_constant]
    if constant_outputs:
        raise UnsupportedError(f"VTA target: graph outputs {constant_outputs} are constants")
    steps, start = [], 0
    for i, p in enumerate(placements + [None]):
        if p is not None and p.layer is None:
            continue
        if start < i:  # the CPU nodes start..i-1
            steps.append(_cpu_step(graph, range(start, i), used_by, outputs, compile_cpu))
        if p is not None:
            node = p.node
            steps.append(VTAStep(node.name, node.op, p.layer.kernel, node.inputs[0].name, node.outputs[0].name,
                                 node.outputs[0].type.shape))
        start = i + 1
    if progress:
        n_vta = sum(p.layer is not None for p in placements)
        progress(f"VTA: {n_vta} layers on VTA, {len(placements) - n_vta} nodes in "
                 f"{sum(isinstance(s, CpuStep) for s in steps)} CPU segments")
    target = {"kind": "vta", "config": asdict(config), "threads": threads}
    return VTAModel(steps, [(v.name, v.type.shape, v.type.dtype) for v in graph.inputs],
                    [(v.name, v.type.shape, v.type.dtype) for v in graph.outputs], target, layer_report(placements))


def _cpu_step(graph, indices, used_by: dict, outputs: set, compile_cpu) -> CpuStep:
    """Nodes `indices` of `graph` as one CPU module: inputs are the values they read from outside,
    outputs the values they define that other nodes or the graph outputs read."""
    nodes = [graph.nodes[i] for i in indices]
    inside = set(indices)
    sub = Graph(f"{graph.name}_cpu{indices[0]}")
    values = {}  # original value id -> value in sub
    for node in nodes:
        for v in node.inputs:
            if id(v) in values:
                continue
            if v.is_constant:
                values[id(v)] = sub.constant(v.data, v.name)
            elif v.producer is None or v.producer not in nodes:
                values[id(v)] = sub.add_input(v.name, v.type)
        outs = sub.add_node(node.op, [values[id(v)] for v in node.inputs], node.attrs, name=node.name,
                            output_names=[v.name for v in node.outputs])
        values.update({id(v): new for v, new in zip(node.outputs, outs)})
    exported = [v for node in nodes for v in node.outputs
                if v.name in outputs or used_by.get(v.name, set()) - inside]
    sub.set_outputs([values[id(v)] for v in exported])
    return CpuStep(compile_cpu(sub), [v.name for v in sub.inputs], [v.name for v in exported])
