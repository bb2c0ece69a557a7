"""Operator fusion, fused-layer conv and memory planning, measured.

1. Early conv groups of VGG-19 and ResNet-50 (light zoo, weights re-randomized), each
   compiled alone unfused and as one FusedLayerConv: bytes of intermediate tensors written
   to memory (unfused: every intermediate feature map; fused: none, the strip buffers
   stay per task, their working set is shown next to the L2 size), the FLOPs the halo
   recomputation adds, and latency (interleaved, medians).
2. Kernels launched per light-zoo model: graph nodes with the default pipeline and with
   the fusion passes (fuse-elementwise, fuse-layers auto) added; for the models given to
   --lower also the call_tir count of the lowered module (layout transforms included).
3. Peak activation memory (--lower models): no reuse, TVM's static liveness-based plan
   as built, and the liveness lower bound (codegen/memory_plan.py).
4. Whole-model latency (--latency models): default pipeline vs + fuse-elementwise vs
   + fuse-layers (auto), interleaved, medians, each checked against ONNX Runtime.

    .venv/bin/python benchmarks/fusion.py [--rounds 10] [--lower vgg19 resnet50]
        [--latency vgg19 resnet50] [--skip-groups] [--json F]
"""
import argparse
import json
import os
import subprocess

os.environ.setdefault("TVM_NUM_THREADS", str(len(os.sched_getaffinity(0))))

import numpy as np

import nnforge
from nnforge.bench import interleaved
from nnforge.driver import import_graph
from nnforge.ir import Graph, interpret
from nnforge.models import light_zoo
from nnforge.passes import DEFAULT_PIPELINE, run_pipeline
from nnforge.passes.fuse.layers import (choose_tile_rows, conv_chains, fuse_layers, l2_cache_bytes,
                                        recompute_fraction, strip_working_set)

FUSION_PASSES = ("fuse-elementwise", "fuse-layers")
# (model, how many chains from the start, most convs per chain)
EARLY_GROUPS = (("vgg19", 2, 2), ("resnet50", 1, 2))


def _subgraph(chain, name: str) -> Graph:
    """The chain alone: its first input becomes the graph input, constants stay constants."""
    g = Graph(name)
    x = g.add_input("x", chain[0].inputs[0].type)
    value = x
    for n in chain:
        ins = [value] + [g.constant(v.data, "w") for v in n.inputs[1:]]
        value = g.add_node(n.op, ins, n.attrs, name=n.name)[0]
    g.set_outputs([value])
    return g


def early_groups(rounds: int) -> list:
    """Section 1 rows: one per conv group."""
    rows, l2 = [], l2_cache_bytes()
    for model, count, depth in EARLY_GROUPS:
        graph = run_pipeline(import_graph(light_zoo.load(model)))
        for i, chain in enumerate(conv_chains(graph, depth)[:count]):
            plain = _subgraph(chain, f"{model}_group{i}")
            tile_rows = choose_tile_rows(chain, l2, force=True)
            fused = fuse_layers(plain, depth, l2, force=True)
            intermediates = sum(n.outputs[0].type.nbytes for n in chain[:-1])
            feeds = {"x": np.random.default_rng(i).standard_normal(plain.inputs[0].type.shape).astype(np.float32)}
            a = nnforge.compile(plain, passes=[], cache=False)
            b = nnforge.compile(fused, passes=[], cache=False)
            ref = interpret(plain, feeds)[0]
            err = max(float(np.abs(m.run(feeds)[0] - ref).max() / np.abs(ref).max()) for m in (a, b))
            t = interleaved({"unfused": lambda: a.run(feeds), "fused": lambda: b.run(feeds)}, rounds)
            rows.append(dict(
                group=f"{model} " + "+".join(n.name for n in chain), layers=[n.op for n in chain],
                tile_rows=tile_rows, intermediate_bytes_unfused=intermediates, intermediate_bytes_fused=0,
                strip_working_set=strip_working_set(chain, tile_rows), l2_bytes=l2,
                recompute=recompute_fraction(chain, tile_rows), unfused_ms=t["unfused"]["median"] * 1e3,
                fused_ms=t["fused"]["median"] * 1e3, max_rel_err=err))
            r = rows[-1]
            print(f"{r['group']:60s} rows {tile_rows:3d}  intermediates {intermediates / 1e6:6.2f} MB -> 0 "
                  f"(strip {r['strip_working_set'] / 1024:5.0f} KiB, L2 {l2 // 1024} KiB)  "
                  f"+{r['recompute'] * 100:4.1f}% FLOPs  {r['unfused_ms']:7.2f} -> {r['fused_ms']:7.2f} ms "
                  f"(x{r['unfused_ms'] / r['fused_ms']:.2f})  err {err:.1e}", flush=True)
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
    p.add_argument("--json")
    args = p.parse_args()
    print(f"# load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    groups = [] if args.skip_groups else early_groups(args.rounds)
    counts = kernel_counts(set(args.lower))
    latency = whole_models(args.latency, args.rounds)
    print(f"# load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"groups": groups, "models": counts, "latency": latency}, f, indent=1)


if __name__ == "__main__":
    main()
