"""int8 post-training quantization report: accuracy per calibrator, weight size, and speed.

For ResNet-, MobileNet- (depthwise + pointwise, ReLU6) and BERT-style models with He/Xavier
weights (nnforge.models), calibrated on random-normal feeds: the output cosine similarity
with the fp32 model and the top-1 agreement over held-out feeds (both from the numpy
reference interpreter), per calibrator and scale mode (plus minmax with the output layer kept
fp32, int8_outputs=False); constant (weight) bytes int8 vs fp32;
and, with --speed, the compiled int8 model (residual Adds inside the QConvs, and in float as
before them) vs our compiled fp32 model, interleaved in one process (medians), with kernel counts.

    .venv/bin/python benchmarks/quantize.py [--calib 8] [--test 16] [--speed] [--rounds 10]
"""
import argparse
import os
import time

import numpy as np

import nnforge
from nnforge.bench import interleaved, write_json
from nnforge.driver import import_graph
from nnforge.ir import interpret
from nnforge.models.builders import resnet
from nnforge.models.mobilenet_bert import bert, mobilenet
from nnforge.passes import run_pipeline
from nnforge.passes.quantize import CALIBRATORS, quantize

MODELS = {  # name -> (builder, input name, input shape) sized so the interpreter stays quick
    "resnet18-112": (lambda: resnet(18, num_classes=100, image=112, width=32, seed=0), "input", (1, 3, 112, 112)),
    "mobilenet-112": (lambda: mobilenet(num_classes=100, image=112, width=16, seed=0), "input", (1, 3, 112, 112)),
    "bert-2x128": (lambda: bert(layers=2, seq=32, dim=128, heads=4, num_classes=16, seed=0), "x", (32, 128)),
}
SPEED_MODEL = (lambda: resnet(18, num_classes=1000, image=224, width=64, seed=0), "input", (1, 3, 224, 224))


def feeds(name, shape, n, seed):
    rng = np.random.default_rng(seed)
    return [{name: rng.standard_normal(shape).astype(np.float32)} for _ in range(n)]


def weight_bytes(graph) -> int:
    return sum(v.type.nbytes for v in graph.constants)


def accuracy(graph, qgraph, test, reference):
    """(min cosine, mean cosine, top-1 agreement) of qgraph's first output vs the fp32 outputs."""
    cos, top1 = [], []
    for f, want in zip(test, reference):
        got = interpret(qgraph, f)[0].astype(np.float64).ravel()
        w = want.astype(np.float64).ravel()
        cos.append(got @ w / (np.linalg.norm(got) * np.linalg.norm(w)))
        top1.append(np.argmax(got) == np.argmax(w))
    return min(cos), float(np.mean(cos)), float(np.mean(top1))


def accuracy_rows(args) -> list:
    """Per model and variant (calibrator, power-of-two, int8 output layer, residual Adds in int8
    or in float): cosine and top-1 vs fp32, weight bytes, quantization time, kernels' worth of nodes."""
    rows = []
    print(f"{'model':14s} {'calibrator':10s} {'pow2':>5s} {'out':>4s} {'res':>5s} {'min cos':>8s} {'mean cos':>9s} "
          f"{'top-1':>6s} {'fp32 MB':>8s} {'int8 MB':>8s} {'ratio':>6s} {'nodes':>6s} {'quant s':>8s}")
    for name, (build, inp, shape) in MODELS.items():
        graph = run_pipeline(import_graph(build()))
        calib, test = feeds(inp, shape, args.calib, 1), feeds(inp, shape, args.test, 2)
        reference = [interpret(graph, f)[0] for f in test]
        variants = ([(c, pow2, True, True) for c in CALIBRATORS for pow2 in (False, True)]
                    + [(c, False, True, False) for c in CALIBRATORS] + [("minmax", False, False, True)])
        for calibrator, pow2, int8_out, int8_res in variants:
            t0 = time.perf_counter()
            q = quantize(graph, calib, calibrator, power_of_two=pow2, int8_outputs=int8_out, int8_residuals=int8_res)
            secs = time.perf_counter() - t0
            lo, mean, top1 = accuracy(graph, q, test, reference)
            fp32, int8 = weight_bytes(graph), weight_bytes(q)
            rows.append(dict(model=name, calibrator=calibrator, power_of_two=pow2, int8_outputs=int8_out,
                             int8_residuals=int8_res, min_cos=lo, mean_cos=mean, top1=top1, fp32_bytes=fp32,
                             int8_bytes=int8, nodes=len(q.nodes), quantize_s=secs))
            print(f"{name:14s} {calibrator:10s} {str(pow2):>5s} {'int8' if int8_out else 'fp32':>4s} "
                  f"{'int8' if int8_res and not pow2 else 'fp32':>5s} {lo:8.4f} {mean:9.4f} {top1:6.2f} "
                  f"{fp32 / 1e6:8.2f} {int8 / 1e6:8.2f} {fp32 / int8:6.2f} {len(q.nodes):6d} {secs:8.1f}", flush=True)
    return rows


def speed_row(args) -> dict:
    """ResNet-18 at 224 compiled: fp32, int8 with float residual Adds (QConv -> Dequantize -> Add ->
    Relu -> Quantize, int8_residuals=False) and int8 with the Adds inside the QConvs, interleaved."""
    build, inp, shape = SPEED_MODEL
    graph = run_pipeline(import_graph(build()))
    calib = feeds(inp, shape, 4, 1)
    x = feeds(inp, shape, 1, 3)[0]
    models, row = {}, dict(model="resnet18-224", load=os.getloadavg()[0])
    for name, g in (("fp32", graph), ("int8_float_add", quantize(graph, calib, args.speed_calibrator,
                                                                  int8_residuals=False)),
                    ("int8", quantize(graph, calib, args.speed_calibrator))):
        t0 = time.perf_counter()
        models[name] = nnforge.compile(g, cache=False)
        row[f"compile_{name}_s"] = time.perf_counter() - t0
        row[f"kernels_{name}"] = len(models[name].report)
        if name != "fp32":
            row[f"{name}_equals_interpreter"] = bool(np.array_equal(interpret(g, x)[0], models[name].run(x)[0]))
    times = interleaved({k: (lambda m=m: m.run(x)) for k, m in models.items()}, rounds=args.rounds)
    row.update({f"{k}_ms": times[k]["median"] * 1e3 for k in models})
    print(f"\nresnet18-224 compiled (load {row['load']:.2f}), medians interleaved:")
    for k in models:
        exact = f", == interpreter: {row[k + '_equals_interpreter']}" if k != "fp32" else ""
        print(f"  {k:15s} {row[k + '_ms']:8.2f} ms  {row['fp32_ms'] / row[k + '_ms']:5.2f}x vs fp32  "
              f"{row['kernels_' + k]:4d} kernels  (compile {row['compile_' + k + '_s']:.0f}s{exact})")
    return row


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--calib", type=int, default=8, help="calibration feeds per model")
    p.add_argument("--test", type=int, default=16, help="held-out feeds per model")
    p.add_argument("--speed", action="store_true", help="also compile and time ResNet-18 at 224, int8 vs fp32")
    p.add_argument("--speed-only", action="store_true")
    p.add_argument("--speed-calibrator", default="percentile")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--json", default="benchmarks/out/quantize.json")
    args = p.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}")
    result = {"accuracy": [] if args.speed_only else accuracy_rows(args)}
    if args.speed or args.speed_only:
        result["speed"] = speed_row(args)
    print(f"wrote {write_json(args.json, result)}")


if __name__ == "__main__":
    main()
