"""VTA on the int8 ResNet-18 (models/resnet18_int8.py): per layer counters, estimated cycles, GEMM
utilisation, and cycles with one vs two virtual threads.

Every VTA layer runs on the simulator with the activation the reference interpreter feeds it and is
checked bit-exact against the interpreter's QConv; then the whole compiled model (VTA layers + CPU
segments) runs once and its int8 output is compared with the interpreter's and with the model
compiled for the CPU (nnforge's int8 kernels). Cycles are the
simulator's estimate (VTA_SPEC.md 5), not a measurement, so machine load does not affect them.

    .venv/bin/python benchmarks/vta.py [--size 224] [--json benchmarks/out/vta.json] [--skip-model]
"""
import argparse
import os
import time

import numpy as np

import nnforge
from nnforge.bench import write_json
from nnforge.codegen.vta.target import lower_node, place
from nnforge.ir import Interpreter
from nnforge.models.resnet18_int8 import resnet18_int8, sample_input


class _VTAChecker(Interpreter):
    """The reference interpreter, also running every VTA-placed layer (1 and 2 threads) on its input."""

    def __init__(self, graph, layers: dict):
        super().__init__(graph)
        self.layers, self.rows = layers, []

    def run_node(self, node, args):
        outs = super().run_node(node, args)
        if node.name in self.layers:
            row = {"node": node.name, "in": list(args[0].shape), "out": list(outs[0].shape),
                   "kernel": list(node.inputs[1].type.shape[2:])}
            for threads, layer in self.layers[node.name].items():
                y, stats = layer.run(args[0])
                if not np.array_equal(y, outs[0]):
                    raise AssertionError(f"{node.name}: VTA output differs from the interpreter's QConv")
                row[f"threads{threads}"] = {**stats.as_dict(), "instructions": len(layer.kernel.program),
                                            "tiles": len(layer.plan.tiles()), "chunks": layer.plan.chunks}
            self.rows.append(row)
        return outs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=224, help="input height and width")
    p.add_argument("--json", default="benchmarks/out/vta.json")
    p.add_argument("--skip-model", action="store_true", help="do not compile and run the whole model")
    args = p.parse_args()
    graph = resnet18_int8((1, 3, args.size, args.size))
    placements = place(graph)
    layers = {pl.node.name: {2: pl.layer, 1: lower_node(pl.node, threads=1)} for pl in placements if pl.layer}
    x = sample_input((1, 3, args.size, args.size), np.random.default_rng(1))
    t0 = time.perf_counter()
    checker = _VTAChecker(graph, layers)
    want = checker.run({"input": x})
    sim_s = time.perf_counter() - t0
    print(f"int8 ResNet-18, input {args.size}x{args.size}: {len(layers)} layers on VTA, "
          f"{len(placements) - len(layers)} nodes on the CPU; every VTA layer bit-exact vs the interpreter")
    print(f"{'layer':22s} {'in':>16s} {'k':>3s} {'tiles':>5s} {'ch':>2s} {'insns':>6s} {'inp KB':>8s} "
          f"{'wgt KB':>8s} {'out KB':>7s} {'gemm':>9s} {'alu':>8s} {'cycles 2vt':>11s} {'util':>6s} "
          f"{'cycles 1vt':>11s} {'1vt/2vt':>7s}")
    for r in checker.rows:
        s2, s1 = r["threads2"], r["threads1"]
        print(f"{r['node']:22s} {str(r['in']):>16s} {r['kernel'][0]:3d} {s2['tiles']:5d} {s2['chunks']:2d} "
              f"{s2['instructions']:6d} {s2['inp_load_nbytes'] / 1024:8.1f} {s2['wgt_load_nbytes'] / 1024:8.1f} "
              f"{s2['out_store_nbytes'] / 1024:7.1f} {s2['gemm_counter']:9d} {s2['alu_counter']:8d} "
              f"{s2['cycles']:11d} {s2['utilisation']:6.1%} {s1['cycles']:11d} {s1['cycles'] / s2['cycles']:7.2f}")
    total = {t: sum(r[f"threads{t}"]["cycles"] for r in checker.rows) for t in (1, 2)}
    gemm = sum(r["threads2"]["gemm_cycles"] for r in checker.rows)
    print(f"total: {total[2]} cycles with 2 virtual threads ({gemm / total[2]:.1%} GEMM utilisation), "
          f"{total[1]} with 1 ({total[1] / total[2]:.2f}x); simulation {sim_s:.1f}s")
    result = {"size": args.size, "layers": checker.rows, "total_cycles": total, "gemm_cycles": gemm}
    if not args.skip_model:
        t0 = time.perf_counter()
        model = nnforge.compile(graph, target="vta", cache=False)
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = model.run({"input": x})
        run_s = time.perf_counter() - t0
        cpu = nnforge.compile(graph, target="cpu", cache=False).run({"input": x})
        exact = {"interpreter": bool(np.array_equal(got[0], want[0])), "cpu": bool(np.array_equal(got[0], cpu[0]))}
        err = float(np.abs(got[1] - want[1]).max())
        print(f"whole model (VTA + CPU segments): compile {compile_s:.1f}s, run {run_s:.1f}s (simulator); int8 "
              f"features bit-exact vs the interpreter: {exact['interpreter']}, vs the CPU int8 path: {exact['cpu']}; "
              f"logits max abs err {err:.1e}")
        result.update(model_bit_exact=exact, logits_max_abs_err=err, compile_s=compile_s, run_s=run_s)
        assert all(exact.values())
    print(f"wrote {write_json(args.json, result)}   (load: {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
