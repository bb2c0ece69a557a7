"""Per-layer Conv timing: nnforge's kernels against a one-node ONNX Runtime Conv model.

Each layer (with bias, constant weights) is lowered by every applicable Conv rule (or
only the named ones), checked against the registry reference, and timed interleaved
with ORT in this process (2 threads each); medians, GFLOPS and the ratio to ORT.

    .venv/bin/python benchmarks/conv_layers.py [--rules conv2d-1x1,conv2d-nchwc-direct] [--only vgg]
"""
import argparse
import os

os.environ.setdefault("TVM_NUM_THREADS", "2")

import numpy as np

from nnforge.bench import interleaved, ort_session
from nnforge.codegen import rules
from nnforge.codegen.kernel import CpuTarget, KernelInput, LowerNode
from nnforge.ir import get_op
from nnforge.ir.types import TensorType

# name: (C, H(=W), M, k, stride, pad)
LAYERS = {
    "r50-7x7s2": (3, 224, 64, 7, 2, 3),
    "r50-1x1-64-256@56": (64, 56, 256, 1, 1, 0),
    "r50-3x3-64@56": (64, 56, 64, 3, 1, 1),
    "r50-1x1-256-64@56": (256, 56, 64, 1, 1, 0),
    "r50-3x3-128@28": (128, 28, 128, 3, 1, 1),
    "r50-1x1-512-128@28": (512, 28, 128, 1, 1, 0),
    "r50-3x3-256@14": (256, 14, 256, 3, 1, 1),
    "r50-1x1-1024-256@14": (1024, 14, 256, 1, 1, 0),
    "r50-3x3-512@7": (512, 7, 512, 3, 1, 1),
    "r50-1x1-2048-512@7": (2048, 7, 512, 1, 1, 0),
    "r50-1x1s2-256-512@56": (256, 56, 512, 1, 2, 0),
    "r50-1x1s2-1024-2048@14": (1024, 14, 2048, 1, 2, 0),
    "r50-3x3s2-128@56": (128, 56, 128, 3, 2, 1),
    "r50-3x3s2-512@14": (512, 14, 512, 3, 2, 1),
    "vgg-3x3-64@224": (64, 224, 64, 3, 1, 1),
    "vgg-3x3-128@112": (128, 112, 128, 3, 1, 1),
    "vgg-3x3-256@56": (256, 56, 256, 3, 1, 1),
    "vgg-3x3-512@28": (512, 28, 512, 3, 1, 1),
    "vgg-3x3-512@14": (512, 14, 512, 3, 1, 1),
    "inc-1x1-192-64@28": (192, 28, 64, 1, 1, 0),
    "inc-3x3-96-128@28": (96, 28, 128, 3, 1, 1),
    "sq-1x1-128-16@55": (128, 55, 16, 1, 1, 0),
    "sq-3x3-16-64@55": (16, 55, 64, 3, 1, 1),
    "sq-1x1-512-1000@13": (512, 13, 1000, 1, 1, 0),
    "alex-11x11s4": (3, 224, 64, 11, 4, 2),
}


def conv_model(c, h, m, k, s, p):
    """A one-node ONNX Conv model (constant weights and bias) and its arrays."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, c, h, h)).astype("float32")
    w = (rng.standard_normal((m, c, k, k)) / np.sqrt(c * k * k)).astype("float32")
    b = rng.standard_normal(m).astype("float32")
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=[s, s], pads=[p] * 4)
    oh = (h + 2 * p - k) // s + 1
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, m, oh, oh))],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, x, w, b


def main():
    import tvm

    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", help="comma-separated Conv rule names to time (default: all that apply)")
    ap.add_argument("--only", help="substring of the layer names to run")
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()
    target = CpuTarget.host()
    rules._load_rules()
    wanted = args.rules.split(",") if args.rules else None
    dev = tvm.cpu()
    print(f"{'layer':22s} {'rule':22s} {'ms':>8s} {'GFLOPS':>7s} {'ORT ms':>8s} {'ratio':>6s}  schedule")
    for name, (c, h, m, k, s, p) in LAYERS.items():
        if args.only and args.only not in name:
            continue
        model, x, w, b = conv_model(c, h, m, k, s, p)
        attrs = get_op("Conv").check_attrs({"strides": (s, s), "pads": (p,) * 4}, "conv")
        out_t = get_op("Conv").infer_types([TensorType.of(a) for a in (x, w, b)], attrs, "conv")
        node = LowerNode("Conv", "conv", attrs, [KernelInput(TensorType.of(x)), KernelInput(TensorType.of(w), w),
                                                  KernelInput(TensorType.of(b), b)], out_t, target)
        (ref,) = get_op("Conv").run([x, w, b], attrs)
        flops = 2.0 * np.prod(out_t[0].shape) * c * k * k
        sess = ort_session(model, threads=2)
        fns, descs = {"ort": lambda: sess.run(None, {"x": x})}, {}
        for r in rules.RULES["Conv"]:
            if (wanted and r.name not in wanted) or (not wanted and r.fallback):
                continue
            kernel = r.fn(node)
            if kernel is None:
                continue
            lib = tvm.compile(kernel.func.with_attr("global_symbol", "main"), target=target.tvm_target())
            params = [[x, w, b][a] if isinstance(a, int) else a for a in kernel.args]
            targs = [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in params]
            targs.append(tvm.runtime.empty(out_t[0].shape, "float32", dev))
            f = lib["main"]
            f(*targs)
            err = np.abs(targs[-1].numpy() - ref).max() / np.abs(ref).max()
            assert err <= 1e-5, f"{name} {r.name}: relative error {err:.2g}"
            fns[r.name] = (lambda f=f, a=targs: f(*a))
            descs[r.name] = kernel.schedule
        t = interleaved(fns, rounds=args.rounds, block=5)
        ort_ms = t["ort"]["median"] * 1e3
        for rname, desc in descs.items():
            ms = t[rname]["median"] * 1e3
            print(f"{name:22s} {rname:22s} {ms:8.3f} {flops / ms / 1e6:7.1f} {ort_ms:8.3f} "
                  f"{ms / ort_ms:6.2f}  {desc}", flush=True)


if __name__ == "__main__":
    main()
