"""Schedule benchmarking: every applicable schedule variant of a layer, and other backends, side by side.

For one op (`nnforge bench --op conv2d --shape ...`) or for each distinct Conv/Gemm/MatMul
layer of a model (`nnforge bench MODEL --layers`), every lowering rule that applies
(direct, 1x1, Winograd F2/F4, im2col, Strassen, generic...) is compiled and timed, next
to ONNX Runtime and stock TVM (the Relax ONNX frontend + TVM's default pipeline) running
the same layer as a one-node model. Systems are sampled in interleaved rounds (each
sample = the mean of a block of calls, after a pause), and the median and spread of the
samples are reported. With RPC sessions the nnforge variants run on the remote servers
(round robin over them) while the other backends run here. Measured times go into the
schedule cache, so a later `nnforge compile --measure` uses them.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from .bench import write_json
from .errors import NnforgeError

OP_ALIASES = {"conv2d": "Conv", "conv": "Conv", "gemm": "Gemm", "dense": "Gemm", "matmul": "MatMul"}
LAYER_OPS = ("Conv", "Gemm", "MatMul")
BACKENDS = ("nnforge", "ort", "tvm")


def parse_attrs(items) -> dict:
    """`NAME=V` options: V a comma list of ints, an int, a float, or a string."""
    out = {}
    for item in items or []:
        name, _, text = item.partition("=")
        if not name or not text:
            raise NnforgeError(f"--attr expects NAME=VALUE, got {item!r}")
        try:
            out[name] = tuple(int(v) for v in text.split(",")) if "," in text else int(text)
        except ValueError:
            try:
                out[name] = float(text)
            except ValueError:
                out[name] = text
    return out


def op_graph(op: str, shapes, attrs: dict, seed: int = 0):
    """A one-node ir.Graph: the first shape is the run-time input, the others constant weights
    (random, He-scaled), as in an inference model."""
    from .ir import Graph
    from .ir.types import TensorType

    op = OP_ALIASES.get(op.lower(), op)
    if not shapes:
        raise NnforgeError(f"--op {op} needs the input shapes: --shape 1,64,56,56 --shape 64,64,3,3 ...")
    rng = np.random.default_rng(seed)
    g = Graph(op.lower())
    inputs = [g.add_input("x", TensorType("float32", tuple(shapes[0])))]
    for i, shape in enumerate(shapes[1:]):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        w = rng.standard_normal(shape).astype(np.float32) * np.float32(np.sqrt(2.0 / max(fan_in, 1)))
        inputs.append(g.constant(w, f"w{i}"))
    g.set_outputs(g.add_node(op, inputs, attrs))
    return g


def layer_graphs(graph) -> list:
    """One one-node graph per distinct Conv/Gemm/MatMul layer of `graph` (same op, attributes
    and input types = same layer), in graph order; non-constant inputs become graph inputs."""
    from .ir import Graph

    seen, out = set(), []
    for node in graph.nodes:
        sig = (node.op, tuple(sorted(node.attrs.items())), tuple((str(v.type), v.is_constant) for v in node.inputs))
        if node.op not in LAYER_OPS or sig in seen:
            continue
        seen.add(sig)
        g = Graph(node.name)
        ins = [v if v.is_constant else g.add_input(f"in{i}", v.type) for i, v in enumerate(node.inputs)]
        g.set_outputs(g.add_node(node.op, ins, node.attrs, name=node.name))
        out.append(g)
    return out


def sample_interleaved(samplers: dict, rounds: int, pause: float = 0.05) -> dict:
    """label -> {median, min, max} seconds over `rounds` samples of each sampler, taken in turn."""
    samples = {k: [] for k in samplers}
    for _ in range(rounds):
        for k, sample in samplers.items():
            time.sleep(pause)
            samples[k].append(sample())
    return {k: {"median": statistics.median(v), "min": min(v), "max": max(v)} for k, v in samples.items()}


def _block_sampler(fn, block: int):
    def sample():
        fn()  # warm-up: caches and the other system's threads
        t0 = time.perf_counter()
        for _ in range(block):
            fn()
        return (time.perf_counter() - t0) / block
    return sample


def _backend_samplers(graph, backends, block: int) -> dict:
    """Samplers running the one-node graph in ONNX Runtime and/or stock TVM, here."""
    from .frontend.onnx_export import export_model
    from .passes.manager import random_feeds

    model, feeds = export_model(graph), random_feeds(graph)
    out = {}
    if "ort" in backends:
        from .bench import ort_session

        sess = ort_session(model)
        out["ort"] = _block_sampler(lambda: sess.run(None, feeds), block)
    if "tvm" in backends:
        out["tvm (stock)"] = _block_sampler(_stock_tvm(model, feeds), block)
    return out


def _stock_tvm(model, feeds):
    """A callable running `model` compiled by TVM's own ONNX frontend and default pipeline."""
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    from .codegen.kernel import CpuTarget

    ex = tvm.compile(from_onnx(model, keep_params_in_input=False), target=CpuTarget.host().tvm_target())
    vm = relax.VirtualMachine(ex, tvm.cpu())
    args = [tvm.runtime.tensor(np.ascontiguousarray(feeds[i.name])) for i in model.graph.input if i.name in feeds]
    return lambda: vm["main"](*args)


def bench_layer(graph, target=None, backends=BACKENDS, sessions=None, rounds: int = 10, block: int = 5,
                record: bool = True) -> dict:
    """Time every applicable schedule of a one-node graph's layer, and the other backends.

    Args:
        graph: a one-node ir.Graph (`op_graph` / `layer_graphs`).
        target: the CpuTarget kernels are compiled for (default: this machine).
        backends: any of "nnforge" (every schedule variant), "ort", "tvm" (stock TVM).
        sessions: RPC sessions the nnforge variants run on (round robin), or None for here.
        rounds: interleaved samples per system.
        block: calls per sample.
        record: store the variants' medians in the schedule cache.
    Returns:
        {"layer", "op", "inputs", "gflop", "chosen" (the cost model's pick), "results":
         label -> {median, min, max, gflops}}.
    """
    from .codegen.kernel import CpuTarget, LowerNode
    from .codegen.measure import record_seconds
    from .codegen.rpc import kernel_sampler
    from .codegen.rules import applicable, select
    from .ir import graph_cost

    target = target or CpuTarget.host()
    n = LowerNode.of(graph.nodes[0], target)
    samplers, variants = {}, {}
    if "nnforge" in backends:
        for i, (r, kernel) in enumerate(applicable(n)):
            session = sessions[i % len(sessions)] if sessions else None
            samplers[r.name] = kernel_sampler(n, kernel, session, number=block)
            variants[r.name] = r
    samplers.update(_backend_samplers(graph, backends, block))
    stats = sample_interleaved(samplers, rounds)
    if record:
        for name, r in variants.items():
            record_seconds(n, r.name, stats[name]["median"])
    flops = graph_cost(graph).flops
    for s in stats.values():
        s["gflops"] = flops / s["median"] / 1e9
    return {"layer": n.name, "op": n.op, "inputs": [str(i.type) for i in n.inputs], "gflop": flops / 1e9,
            "chosen": select(n).rule.name if "nnforge" in backends else None, "results": stats}


def format_table(rows) -> str:
    """One line per (layer, system): median ms, spread, GFLOPS; * marks the cost model's choice."""
    lines = [f"{'layer':28s} {'system':22s} {'median ms':>10s} {'min ms':>8s} {'max ms':>8s} {'GFLOPS':>8s}"]
    for row in rows:
        best = min(row["results"], key=lambda k: row["results"][k]["median"])
        for label, s in sorted(row["results"].items(), key=lambda kv: kv[1]["median"]):
            mark = ("*" if label == row["chosen"] else " ") + ("<" if label == best else " ")
            lines.append(f"{row['layer'][:28]:28s} {mark}{label[:20]:20s} {s['median'] * 1e3:10.3f} "
                         f"{s['min'] * 1e3:8.3f} {s['max'] * 1e3:8.3f} {s['gflops']:8.1f}")
    lines.append("(* = chosen by nnforge's cost model, < = fastest measured)")
    return "\n".join(lines)


def write_report(rows, path_prefix: str) -> list[str]:
    """`PREFIX.json` always, and `PREFIX.png` (GFLOPS per layer and system) when matplotlib is there."""
    write_json(path_prefix + ".json", rows)
    written = [path_prefix + ".json"]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    labels = sorted({k for row in rows for k in row["results"]})
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows) * max(1, len(labels)) / 3), 4.5))
    width = 0.8 / len(labels)
    for j, label in enumerate(labels):
        ys = [row["results"].get(label, {}).get("gflops", 0) for row in rows]
        ax.bar([i + j * width for i in range(len(rows))], ys, width, label=label)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))])
    ax.set_xticklabels([row["layer"] for row in rows], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("GFLOPS (median)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path_prefix + ".png", dpi=110)
    written.append(path_prefix + ".png")
    return written


def bench_model(model, graph, input_shapes=None, backends=BACKENDS, rounds: int = 5, block: int = 2) -> dict:
    """The whole model in nnforge, ONNX Runtime and/or stock TVM, interleaved; the same row format
    as `bench_layer` (plus the largest relative output difference from ORT). `graph` is the
    model imported with `input_shapes` (for the feeds and the FLOPs)."""
    import nnforge

    from .ir import graph_cost
    from .passes.manager import random_feeds

    feeds = random_feeds(graph)
    samplers, ref = {}, None
    if "ort" in backends or "nnforge" in backends:
        from .bench import ort_session

        sess = ort_session(model)
        ref = sess.run(None, feeds)
        if "ort" in backends:
            samplers["ort"] = _block_sampler(lambda: sess.run(None, feeds), block)
    err = None
    if "nnforge" in backends:
        compiled = nnforge.compile(model, input_shapes=input_shapes)
        err = max(float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(b))), 1e-30)
                  for a, b in zip(compiled.run(feeds), ref))
        samplers["nnforge"] = _block_sampler(lambda: compiled.run(feeds), block)
    if "tvm" in backends:
        samplers["tvm (stock)"] = _block_sampler(_stock_tvm(model, feeds), block)
    stats = sample_interleaved(samplers, rounds)
    flops = graph_cost(graph).flops
    for s in stats.values():
        s["gflops"] = flops / s["median"] / 1e9
    return {"layer": "(whole model)", "op": "model", "inputs": sorted(feeds), "gflop": flops / 1e9,
            "chosen": "nnforge" if "nnforge" in backends else None, "results": stats, "max_rel_err": err}
