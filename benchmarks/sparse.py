"""Block-sparse kernels vs dense, per layer, and a channel-pruned ResNet vs the unpruned one.

    python benchmarks/sparse.py [--block 16x1] [--rounds 10] [--image 224] [--skip-model] [--threads=2]
                                [--out benchmarks/out/]

Layers: FC (Gemm, batch 1 and 16 rows) and 1x1-conv shapes of ResNet/BERT/VGG, He-initialized
weights block-pruned (`passes/prune` block pruning, default blocks of the vector width x 1) at
50/70/80/90/95% sparsity; the dense kernel is what the cost model picks with `sparse=off`, the
sparse one `sparse=on`; "auto" is the family the cost model picks by itself. Model: ResNet-18
(He init, nnforge/models/builders.py) against the same model with `channel:l1:0.5` pruning,
both compiled by nnforge. Timings are block-interleaved in one process (nnforge.bench.interleaved),
medians. On a machine shared with other jobs, `--threads=1` gives steadier numbers: a parallel
kernel waits at its barrier for a descheduled worker thread (a few ms per stall). Writes sparse.json
to --out.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __name__ == "__main__":  # thread pools read this once, at first use: set it before any import
    os.environ["TVM_NUM_THREADS"] = next((a.split("=")[1] for a in sys.argv if a.startswith("--threads=")), "2")

import numpy as np  # noqa: E402

from nnforge.bench import interleaved, write_json  # noqa: E402
from nnforge.codegen import rules  # noqa: E402
from nnforge.codegen.kernel import CpuTarget, KernelInput, LowerNode  # noqa: E402
from nnforge.codegen.measure import build_kernel, kernel_tensors  # noqa: E402
from nnforge.ir import get_op  # noqa: E402
from nnforge.ir.types import TensorType  # noqa: E402
from nnforge.passes.prune.weights import prune_blocks  # noqa: E402

SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95)
# (label, op, input shape, weight [out, in] shape)
LAYERS = [
    ("fc 1x1024->1024", "Gemm", (1, 1024), (1024, 1024)),
    ("fc 1x4096->4096 (VGG)", "Gemm", (1, 4096), (4096, 4096)),
    ("fc 16x768->3072 (BERT FFN)", "Gemm", (16, 768), (3072, 768)),
    ("conv1x1 256->64 @56x56", "Conv", (1, 256, 56, 56), (64, 256)),
    ("conv1x1 128->512 @28x28", "Conv", (1, 128, 28, 28), (512, 128)),
    ("conv1x1 1024->256 @14x14", "Conv", (1, 1024, 14, 14), (256, 1024)),
]


def layer_node(op, x_shape, w, target) -> LowerNode:
    """The LowerNode of a Gemm (x @ w^T) or 1x1 Conv with constant weight matrix w[out, in]."""
    if op == "Gemm":
        attrs, data = {"transB": 1}, w
        out = (x_shape[0], w.shape[0])
    else:
        attrs, data = {}, w.reshape(w.shape + (1, 1))
        out = (x_shape[0], w.shape[0]) + x_shape[2:]
    return LowerNode(op, op.lower(), get_op(op).check_attrs(attrs), [KernelInput(TensorType("float32", x_shape)),
                     KernelInput(TensorType.of(data), data)], [TensorType("float32", out)], target)


def runner(node, kernel):
    """(call, output) running the compiled kernel on random inputs."""
    import tvm

    fn = build_kernel(node, kernel)["k"]
    args = kernel_tensors(node, kernel, tvm.cpu(0))
    return (lambda: fn(*args)), args[-1]


def bench_layer(label, op, x_shape, w_shape, sparsity, block, rounds, target) -> dict:
    rng = np.random.default_rng(0)
    w = (rng.standard_normal(w_shape) * np.sqrt(2.0 / w_shape[1])).astype(np.float32)
    node = layer_node(op, x_shape, prune_blocks(w, block, sparsity), target)
    choices = {k: rules.select(node, rules.ScheduleOptions({"sparse": v})) for k, v in (("dense", False),
                                                                                       ("sparse", True))}
    auto = rules.select(node).rule.family
    runs = {k: runner(node, c.kernel) for k, c in choices.items()}
    times = interleaved({k: call for k, (call, _) in runs.items()}, rounds=rounds)
    dense_out, sparse_out = (runs[k][1].numpy() for k in ("dense", "sparse"))
    err = float(np.abs(dense_out - sparse_out).max() / max(np.abs(dense_out).max(), 1e-30))
    return {"layer": label, "sparsity": sparsity, "dense_ms": times["dense"]["median"] * 1e3,
            "sparse_ms": times["sparse"]["median"] * 1e3,
            "speedup": times["dense"]["median"] / times["sparse"]["median"], "auto": auto,
            "dense_rule": choices["dense"].rule.name, "sparse_schedule": choices["sparse"].kernel.schedule,
            "max_rel_err": err}


def bench_model(image: int, rounds: int) -> dict:
    """ResNet-18 unpruned vs channel:l1:0.5, both compiled by nnforge (no cache), interleaved."""
    import nnforge
    from nnforge.driver import import_graph
    from nnforge.ir import graph_cost, interpret
    from nnforge.models.builders import resnet
    from nnforge.passes import DEFAULT_PIPELINE, run_pipeline

    model = resnet(18, image=image)
    x = np.random.default_rng(0).standard_normal((1, 3, image, image)).astype(np.float32)
    variants = {"unpruned": list(DEFAULT_PIPELINE), "channel:l1:0.5": ["prune:channel:l1:0.5", *DEFAULT_PIPELINE]}
    out = {}
    calls = {}
    for name, passes in variants.items():
        graph = run_pipeline(import_graph(model), passes)
        cm = nnforge.compile(model, passes=passes, cache=False)
        calls[name] = (lambda cm=cm: cm.run({"input": x}))
        (want,), (got,) = interpret(graph, {"input": x}), cm.run({"input": x})
        out[name] = {"gflops": graph_cost(graph).flops / 1e9,
                     "weights_mb": sum(v.type.nbytes for v in graph.constants) / 1e6,
                     "max_rel_err_vs_interpreter": float(np.abs(got - want).max() / np.abs(want).max())}
    times = interleaved(calls, rounds=rounds)
    for name in variants:
        out[name]["ms"] = times[name]["median"] * 1e3
    out["speedup"] = times["unpruned"]["median"] / times["channel:l1:0.5"]["median"]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--block", help="RxC blocks of W[out, in] (default: vector lanes x 1)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--image", type=int, default=224)
    p.add_argument("--skip-model", action="store_true")
    p.add_argument("--threads", help="TVM threads (read before TVM starts: write --threads=N)")
    p.add_argument("--out", default=str(Path(__file__).parent / "out"))
    args = p.parse_args(argv)
    target = CpuTarget.host()
    block = tuple(int(d) for d in args.block.split("x")) if args.block else (target.vector_lanes, 1)
    load = os.getloadavg()
    print(f"# {target.mcpu}, {os.environ.get('TVM_NUM_THREADS')} threads, {target.vector_lanes} lanes; "
          f"blocks {block[0]}x{block[1]}; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'layer':28s} {'sparsity':>8s} {'dense ms':>9s} {'sparse ms':>9s} {'speedup':>7s} {'auto':>8s}  sparse layout")
    rows = []
    for label, op, x_shape, w_shape in LAYERS:
        for s in SPARSITIES:
            r = bench_layer(label, op, x_shape, w_shape, s, block, args.rounds, target)
            rows.append(r)
            print(f"{label:28s} {s:8.0%} {r['dense_ms']:9.3f} {r['sparse_ms']:9.3f} {r['speedup']:7.2f} "
                  f"{r['auto']:>8s}  {r['sparse_schedule']}  (err {r['max_rel_err']:.1e})", flush=True)
    result = {"target": target.to_json(), "threads": os.environ.get("TVM_NUM_THREADS"), "block": block,
              "load_average": load, "layers": rows}
    if not args.skip_model:
        m = bench_model(args.image, args.rounds)
        result["model"] = m
        print(f"\nResNet-18 {args.image}x{args.image}: ")
        for name in ("unpruned", "channel:l1:0.5"):
            print(f"  {name:16s} {m[name]['ms']:8.2f} ms  {m[name]['gflops']:6.2f} GFLOPs  "
                  f"{m[name]['weights_mb']:6.1f} MB weights  (max rel err vs interpreter "
                  f"{m[name]['max_rel_err_vs_interpreter']:.1e})")
        print(f"  speedup {m['speedup']:.2f}x")
    print(f"wrote {write_json(os.path.join(args.out, 'sparse.json'), result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
