"""Operator fusion, fused-layer conv and memory planning, measured.

1. Early conv groups of VGG-19 (blocks 1 and 2) and ResNet-50 (first 1x1 + 3x3), light zoo,
   weights re-randomized, each compiled alone: unfused (the codegen's choice per node, often
   Winograd), unfused with direct convs only (winograd=off: the fused kernel's method, so
   FLOP rates compare), and one FusedLayerConv with the halo recomputed / reused. Bytes of
   intermediate tensors written to memory (unfused: every intermediate feature map; fused:
   none, the line buffers stay per task, their working set shown next to the L2 size), the
   FLOPs each halo mode adds, latency (interleaved, medians) and GFLOP/s (direct conv FLOPs
   over time). Run once per thread count (TVM_NUM_THREADS=1, 2); --size 448 runs the VGG
   groups on 448x448 images (intermediates larger than the L3).
2. Kernels launched per light-zoo model: graph nodes with the default pipeline and with
   the fusion passes (fuse-elementwise, fuse-layers auto) added; for the models given to
   --lower also the call_tir count of the lowered module (layout transforms included).
3. Peak activation memory (--lower models): no reuse, TVM's static liveness-based plan
   as built, and the liveness lower bound (codegen/memory_plan.py).
4. Whole-model latency (--latency models): default pipeline vs + fuse-elementwise vs
   + fuse-layers (auto), interleaved, medians, each checked against ONNX Runtime.

    TVM_NUM_THREADS=1 .venv/bin/python benchmarks/fusion.py [--rounds 10] [--lower vgg19 resnet50]
        [--latency vgg19 resnet50] [--skip-groups] [--size 448] [--json F]
"""
import argparse
import os
import subprocess

os.environ.setdefault("TVM_NUM_THREADS", str(len(os.sched_getaffinity(0))))

import numpy as np

import nnforge
from nnforge.bench import interleaved, write_json
from nnforge.driver import import_graph
from nnforge.codegen.kernel import CpuTarget
from nnforge.ir import Graph, TensorType, get_op, interpret
from nnforge.models import light_zoo
from nnforge.passes import DEFAULT_PIPELINE, run_pipeline
from nnforge.passes.fuse.layers import (choose_tiling, conv_chains, fuse_layers, l2_cache_bytes,
                                        recompute_fraction, strip_working_set)

FUSION_PASSES = ("fuse-elementwise", "fuse-layers")
# (model, how many chains from the start, most convs per chain): VGG-19 blocks 1 and 2, ResNet-50's
# first 1x1 + 3x3 pair
EARLY_GROUPS = (("vgg19", 2, 2), ("resnet50", 1, 2))
HALOS = ("recompute", "reuse")


def _subgraph(chain, name: str, scale: float = 1.0) -> Graph:
    """The chain alone: its first input becomes the graph input (its height and width times
    `scale`), constants stay constants."""
    g = Graph(name)
    n, c, h, w = chain[0].inputs[0].type.shape
    x = g.add_input("x", TensorType(chain[0].inputs[0].type.dtype, (n, c, round(h * scale), round(w * scale))))
    value = x
    for node in chain:
        ins = [value] + [g.constant(v.data, "w") for v in node.inputs[1:]]
        value = g.add_node(node.op, ins, node.attrs, name=node.name)[0]
    g.set_outputs([value])
    return g


def early_groups(rounds: int, size: int | None = None) -> list:
    """Section 1 rows: one per conv group, unfused vs fused with the halo recomputed / reused."""
    rows, l2 = [], l2_cache_bytes()
    for model, count, depth in EARLY_GROUPS:
        graph = run_pipeline(import_graph(light_zoo.load(model)))
        for i, whole in enumerate(conv_chains(graph, depth)[:count]):
            scale = size / graph.inputs[0].type.shape[2] if size and model == "vgg19" else 1.0
            plain = _subgraph(whole, f"{model}_group{i}", scale)
            chain = conv_chains(plain, depth)[0]
            tile_rows = choose_tiling(chain, l2, force=True)[0]
            graphs = {"unfused": plain, **{h: fuse_layers(plain, depth, l2, force=True, halo=h) for h in HALOS}}
            intermediates = sum(n.outputs[0].type.nbytes for n in chain[:-1])
            feeds = {"x": np.random.default_rng(i).standard_normal(plain.inputs[0].type.shape).astype(np.float32)}
            ref = interpret(plain, feeds)[0]
            mods = {k: nnforge.compile(g, passes=[], cache=False) for k, g in graphs.items()}
            # the unfused convs as direct convs (conv2d.py), the fused kernel's method: FLOP rates compare
            mods["unfused-direct"] = nnforge.compile(plain, passes=[], cache=False, schedule="winograd=off")
            err = max(float(np.abs(m.run(feeds)[0] - ref).max() / np.abs(ref).max()) for m in mods.values())
            t = interleaved({k: (lambda m=m: m.run(feeds)) for k, m in mods.items()}, rounds)
            flops = sum(get_op("Conv").cost([v.type for v in n.inputs], [n.outputs[0].type], n.attrs).flops
                        for n in chain if n.op == "Conv")
            ms = {k: v["median"] * 1e3 for k, v in t.items()}
            rows.append(dict(
                group=f"{model} " + "+".join(n.name for n in chain), input=list(plain.inputs[0].type.shape),
                threads=int(os.environ["TVM_NUM_THREADS"]), tile_rows=tile_rows,
                intermediate_bytes_unfused=intermediates, intermediate_bytes_fused=0,
                strip_working_set=strip_working_set(chain, tile_rows), l2_bytes=l2,
                extra_flops={h: recompute_fraction(chain, tile_rows, CpuTarget.host().num_cores, h) for h in HALOS},
                ms=ms, min_ms={k: v["min"] * 1e3 for k, v in t.items()},
                gflops={k: flops / v / 1e6 for k, v in ms.items()}, max_rel_err=err))
            r = rows[-1]
            print(f"{r['group']:45s} {'x'.join(map(str, r['input'][2:]))} {r['threads']}T rows {tile_rows:3d}  "
                  f"intermediates {intermediates / 1e6:6.2f} MB -> 0 (strip {r['strip_working_set'] / 1024:5.0f} "
                  f"KiB, L2 {l2 // 1024} KiB)  extra FLOPs " + "/".join(f"{r['extra_flops'][h] * 100:.1f}%" for h in HALOS)
                  + "  ms " + "  ".join(f"{k} {v:7.2f} ({r['gflops'][k]:.0f} GF/s)" for k, v in ms.items())
                  + f"  err {err:.1e}", flush=True)
    return rows


def kernel_counts(lower_models) -> list:
    """Sections 2 and 3: nodes per model, and for `lower_models` call_tir counts and memory."""
    from nnforge.codegen.cpu import lower
    from nnforge.codegen.kernel import CpuTarget
    from nnforge.codegen.memory_plan import activation_memory

    rows = []
    for name in light_zoo.NAMES:
        graph = import_graph(light_zoo.load(name))
        before = run_pipeline(graph)
        after = run_pipeline(graph, list(DEFAULT_PIPELINE) + list(FUSION_PASSES))
        row = dict(model=name, nodes_before=len(before.nodes), nodes_after=len(after.nodes),
                   fused_elementwise=after.op_histogram().get("FusedElementwise", 0),
                   fused_layers=after.op_histogram().get("FusedLayerConv", 0))
        if name in lower_models:
            for label, g in (("before", before), ("after", after)):
                mod = lower(g, CpuTarget.host()).mod
                mem = activation_memory(mod)
                row[f"call_tir_{label}"] = str(mod["main"]).count("call_tir")
                row[f"memory_{label}"] = dict(unplanned=mem.unplanned, planned=mem.planned,
                                              lower_bound=mem.lower_bound)
        rows.append(row)
        extra = ""
        if "call_tir_before" in row:
            mb, ma = row["memory_before"], row["memory_after"]
            extra = (f"  call_tir {row['call_tir_before']} -> {row['call_tir_after']}  activation MB: "
                     f"no reuse {mb['unplanned'] / 1e6:.1f} -> {ma['unplanned'] / 1e6:.1f}, TVM plan "
                     f"{mb['planned'] / 1e6:.1f} -> {ma['planned'] / 1e6:.1f}, bound "
                     f"{mb['lower_bound'] / 1e6:.1f} -> {ma['lower_bound'] / 1e6:.1f}")
        print(f"{name:14s} nodes {row['nodes_before']:4d} -> {row['nodes_after']:4d} "
              f"(FusedElementwise {row['fused_elementwise']}, FusedLayerConv {row['fused_layers']}){extra}",
              flush=True)
    return rows


def whole_models(names, rounds: int) -> list:
    """Section 4 rows: latency of each pipeline, interleaved."""
    from nnforge.bench import ort_session

    pipelines = {"default": None, "+fuse-elementwise": [*DEFAULT_PIPELINE, "fuse-elementwise"],
                 "+fuse-layers": [*DEFAULT_PIPELINE, *FUSION_PASSES]}
    rows = []
    for name in names:
        model = light_zoo.load(name)
        feeds = light_zoo.input_feed(model)
        ref = ort_session(model).run(None, feeds)[0]
        compiled = {k: nnforge.compile(model, passes=p, cache=False) for k, p in pipelines.items()}
        errs = {k: float(np.abs(m.run(feeds)[0] - ref).max() / np.abs(ref).max()) for k, m in compiled.items()}
        t = interleaved({k: (lambda m=m: m.run(feeds)) for k, m in compiled.items()}, rounds)
        rows.append(dict(model=name, ms={k: v["median"] * 1e3 for k, v in t.items()}, max_rel_err_vs_ort=errs))
        print(f"{name:14s} " + "  ".join(f"{k} {v['median'] * 1e3:7.2f} ms" for k, v in t.items())
              + f"  max rel err vs ORT {max(errs.values()):.1e}", flush=True)
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--lower", nargs="*", default=["vgg19", "resnet50"],
                   help="models to lower for call_tir counts and activation memory (slow)")
    p.add_argument("--latency", nargs="*", default=["vgg19", "resnet50"], help="models to time whole")
    p.add_argument("--skip-groups", action="store_true", help="leave out section 1")
    p.add_argument("--size", type=int, help="VGG groups at this image size (e.g. 448: intermediates > L3)")
    p.add_argument("--json")
    args = p.parse_args()
    print(f"# load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    groups = [] if args.skip_groups else early_groups(args.rounds, args.size)
    counts = kernel_counts(set(args.lower))
    latency = whole_models(args.latency, args.rounds)
    print(f"# load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    if args.json:
        write_json(args.json, {"groups": groups, "models": counts, "latency": latency})


if __name__ == "__main__":
    main()
