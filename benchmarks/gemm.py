"""GFLOPS of nnforge's float32 GEMM (tiled, and Strassen with 1 and 2 levels) against
numpy (OpenBLAS) and ONNX Runtime (one MatMul node), square and skinny shapes.

    python benchmarks/gemm.py [--max-size 2048] [--rounds 5] [--threads=2] [--out benchmarks/out/]

B is a constant (weights, pre-packed at compile time) unless --runtime-b. Timings are
interleaved in blocks in one process (nnforge.bench.interleaved), medians; GFLOPS are
nominal (2*M*N*K / time) for every method, Strassen included. Writes gemm.json and
gemm.png to --out.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

if __name__ == "__main__":  # thread pools read these once, at first use: set them before any import
    _threads = next((a.split("=")[1] for a in sys.argv if a.startswith("--threads=")), "2")
    for _var in ("TVM_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ[_var] = _threads

import numpy as np  # noqa: E402

from nnforge.bench import interleaved, ort_session, write_json  # noqa: E402
from nnforge.codegen import rules  # noqa: E402
from nnforge.codegen.gemm import matmul_packed  # noqa: E402
from nnforge.codegen.gemm_strassen import strassen_kernel  # noqa: E402
from nnforge.codegen.kernel import CpuTarget, KernelInput, LowerNode  # noqa: E402
from nnforge.ir.types import TensorType  # noqa: E402


def shapes(max_size: int):
    """(M, N, K) cases: squares 64..max_size, then M in 1, 4, 16 with N = K in 1024..max_size."""
    squares = [s for s in (64, 128, 256, 512, 1024, 2048, 4096) if s <= max_size]
    skinny = [(m, s, s) for s in (1024, 2048, 4096) if s <= max_size for m in (1, 4, 16)]
    return [(s, s, s) for s in squares] + skinny


def compile_node(kernel, node):
    """A callable running `kernel` (a Kernel for `node`) on input A, with B as `kernel.args` says."""
    import tvm

    ex = tvm.compile(kernel.func.with_attr("global_symbol", "main"), target=node.target.tvm_target())
    f, dev = ex["main"], tvm.cpu(0)

    def bind(a, b):
        params = [(a, b)[x] if isinstance(x, int) else x for x in kernel.args]
        args = [tvm.runtime.tensor(np.ascontiguousarray(p), dev) for p in params]
        out = tvm.runtime.empty(node.outputs[0].shape, "float32", dev)
        return (lambda: f(*args, out)), out
    return bind


def ort_matmul(a, b, runtime_b: bool, threads: int):
    from onnx import TensorProto, helper, numpy_helper

    ins = [helper.make_tensor_value_info("a", TensorProto.FLOAT, a.shape)]
    inits = []
    if runtime_b:
        ins.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, b.shape))
    else:
        inits.append(numpy_helper.from_array(b, "b"))
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, (a.shape[0], b.shape[1]))
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"])], "g", ins, [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort_session(model, threads)
    feeds = {"a": a, **({"b": b} if runtime_b else {})}
    return lambda: sess.run(None, feeds)


def bench_shape(m, n, k, target, args) -> dict:
    """Times and errors of every method for one shape."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype("float32")
    b = rng.standard_normal((k, n)).astype("float32")
    ref = a.astype(np.float64) @ b
    node = LowerNode("MatMul", "mm", {}, [KernelInput(TensorType.of(a)),
                                          KernelInput(TensorType.of(b), None if args.runtime_b else b)],
                     [TensorType("float32", (m, n))], target)
    kernels = {"nnforge": matmul_packed(node)}
    if min(m, n, k) >= 256:
        for levels in (1, 2):
            kernels[f"strassen{levels}"] = strassen_kernel(node, levels)
    fns, errors, schedules = {"numpy": lambda: a @ b}, {}, {}
    if not args.no_ort:
        fns["ort"] = ort_matmul(a, b, args.runtime_b, target.num_cores)
    for name, kernel in kernels.items():
        run, out = compile_node(kernel, node)(a, b)
        run()
        errors[name] = float(np.abs(out.numpy() - ref).max() / np.abs(ref).max())
        fns[name], schedules[name] = run, kernel.schedule
    chosen = rules.select(node).rule.name
    times = interleaved(fns, rounds=args.rounds, block=3)
    gflops = {name: 2 * m * n * k / t["median"] / 1e9 for name, t in times.items()}
    return {"shape": [m, n, k], "gflops": gflops, "median_s": {k_: t["median"] for k_, t in times.items()},
            "rel_err": errors, "schedule": schedules, "chosen_rule": chosen}


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    squares = [r for r in results if len(set(r["shape"])) == 1]
    skinny = [r for r in results if len(set(r["shape"])) > 1]
    for ax, rows, title in ((axes[0], squares, "square M = N = K"), (axes[1], skinny, "skinny M x N=K")):
        labels = ["x".join(map(str, r["shape"][:2])) for r in rows]
        methods = [k for k in ("numpy", "ort", "nnforge", "strassen1", "strassen2") if any(k in r["gflops"] for r in rows)]
        for meth in methods:
            xs = [i for i, r in enumerate(rows) if meth in r["gflops"]]
            ax.plot(xs, [rows[i]["gflops"][meth] for i in xs], marker="o", label=meth)
        ax.set_xticks(range(len(rows)), labels, rotation=45)
        ax.set_ylabel("GFLOPS (nominal 2MNK/t)")
        ax.set_title(title)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-size", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runtime-b", action="store_true", help="B is a run-time input (packed by the kernel)")
    ap.add_argument("--no-ort", action="store_true")
    ap.add_argument("--threads", type=int, default=2, help="for every library; write it as --threads=N")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out"))
    args = ap.parse_args(argv)
    target = dataclasses.replace(CpuTarget.host(), num_cores=args.threads)
    methods = ["numpy", "ort", "nnforge", "strassen1", "strassen2"]
    print(f"{'M x N x K':>16} " + " ".join(f"{m:>10}" for m in methods) + "   GFLOPS; nnforge/numpy, chosen rule")
    results = []
    for m, n, k in shapes(args.max_size):
        r = bench_shape(m, n, k, target, args)
        results.append(r)
        g = r["gflops"]
        cells = " ".join(f"{g[x]:10.1f}" if x in g else f"{'-':>10}" for x in methods)
        print(f"{m:>5}x{n}x{k:<5} {cells}   {g['nnforge'] / g['numpy']:.2f}x  {r['chosen_rule']}", flush=True)
    out = Path(args.out)
    write_json(out / "gemm.json", {"target": target.to_json(), "runtime_b": args.runtime_b, "threads": args.threads,
                                   "results": results})
    plot(results, out / "gemm.png")
    print(f"wrote {out / 'gemm.json'} and {out / 'gemm.png'}")


if __name__ == "__main__":
    sys.exit(main())
