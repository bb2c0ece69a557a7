"""int8 kernels against our fp32 kernels: QConv vs Conv and QMatMul vs MatMul, per layer.

Each layer is lowered as nnforge would (the rule the cost model picks, for both dtypes),
checked (int8 bit for bit against the registry reference), and timed interleaved in this
process (TVM_NUM_THREADS=2); medians, G(FL)OPS (2 per multiply-add), and int8 speed / fp32 speed
(of the medians, and of the fastest runs).
With --asm, the instruction mix of each int8 kernel's assembly (vpdpbusd count etc.);
--mcpu haswell --weight-bits 7 times the AVX2 (vpmaddubsw) path against AVX2 fp32 kernels;
--portable times the generic int8 rules (`--schedule int8=off`) instead of the fast ones.

    .venv/bin/python benchmarks/int8_kernels.py [--only r50] [--rounds 8] [--asm] [--mcpu haswell]
        [--weight-bits 7] [--portable]
"""
import argparse
import os
import re
from collections import Counter

os.environ.setdefault("TVM_NUM_THREADS", "2")

import numpy as np

from nnforge.bench import interleaved
from nnforge.codegen import rules
from nnforge.codegen.int8_dot import cpu_has
from nnforge.codegen.kernel import CpuTarget, KernelInput, LowerNode
from nnforge.ir import get_op
from nnforge.ir.types import TensorType

# conv name: (C, H(=W), M, k, stride, pad)
CONVS = {
    "r50-3x3-64@56": (64, 56, 64, 3, 1, 1),
    "r50-3x3-128@28": (128, 28, 128, 3, 1, 1),
    "r50-3x3-256@14": (256, 14, 256, 3, 1, 1),
    "r50-3x3s2-128@56": (128, 56, 128, 3, 2, 1),
    "r50-1x1-64-256@56": (64, 56, 256, 1, 1, 0),
    "r50-1x1-256-64@56": (256, 56, 64, 1, 1, 0),
    "r50-1x1-1024-256@14": (1024, 14, 256, 1, 1, 0),
}
# MobileNet-style depthwise 3x3 (group == C): (C, H(=W), stride); also timed against the generic int8 rule
DEPTHWISE = {
    "dw-32@112": (32, 112, 1), "dw-96@56s2": (96, 56, 2), "dw-144@56": (144, 56, 1), "dw-192@28": (192, 28, 1),
    "dw-384@14": (384, 14, 1), "dw-576@14": (576, 14, 1), "dw-576@14s2": (576, 14, 2), "dw-960@7": (960, 7, 1),
}
# gemm name: (M, K, N)
GEMMS = {
    "gemm-512x1024x1024": (512, 1024, 1024),
    "bert-128x768x3072": (128, 768, 3072),
    "bert-128x3072x768": (128, 3072, 768),
    "fc-1x2048x1000": (1, 2048, 1000),
}
ASM_OPS = ("vpdpbusd", "vpmaddubsw", "vpmaddwd", "vpmulld", "vpmovzxbd", "vpmovsxbd", "vpbroadcastd", "vmovdqu64",
           "vmovdqu", "vmovups")


def _node(op, attrs, arrays, const, target):
    opdef = get_op(op)
    attrs = opdef.check_attrs(attrs, op.lower())
    ins = [KernelInput(TensorType.of(a), a if c else None) for a, c in zip(arrays, const)]
    outs = opdef.infer_types([i.type for i in ins], attrs, op.lower())
    return LowerNode(op, op.lower(), attrs, ins, outs, target), opdef.run(arrays, attrs)[0]


def _compiled(node, arrays, options=None):
    """(call, rule name, schedule, asm, output) of the rule nnforge chooses for `node`."""
    import tvm

    choice = rules.select(node, options)
    lib = tvm.compile(choice.kernel.func.with_attr("global_symbol", "main"), target=node.target.tvm_target())
    params = [arrays[a] if isinstance(a, int) else a for a in choice.kernel.args]
    targs = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in params]
    targs.append(tvm.runtime.empty(node.outputs[0].shape, node.outputs[0].dtype))
    f = lib["main"]
    f(*targs)
    asm = lib.mod.inspect_source("asm")
    return (lambda: f(*targs)), choice.rule.name, choice.kernel.schedule, asm, targs[-1].numpy()


def _requant(reduction, channels, rng):
    shift = rng.integers(20, 28, channels)
    mult = np.maximum(1, np.round(64 / (np.sqrt(reduction) * 74 * 74) * 2.0 ** shift)).astype(np.int64)
    return {"multiplier": [int(v) for v in mult], "shift": [int(v) for v in shift], "x_zero_point": 3,
            "activation": "Relu"}


def layers(only, weight_bits):
    """(name, op pair, ops per run, int8 (attrs, arrays), fp32 (attrs, arrays)) per layer."""
    rng = np.random.default_rng(0)
    half = 2 ** (weight_bits - 1)
    for name, (c, h, m, k, s, p) in CONVS.items():
        if only and only not in name:
            continue
        x = rng.integers(0, 256, (1, c, h, h)).astype("uint8")
        w = rng.integers(-half, half, (m, c, k, k)).astype("int8")
        b = rng.integers(-1000, 1000, m).astype("int32")
        geo = {"strides": (s, s), "pads": (p,) * 4}
        oh = (h + 2 * p - k) // s + 1
        int8 = ({**geo, **_requant(c * k * k, m, rng)}, [x, w, b])
        fp32 = (geo, [x.astype("float32") / 64, w.astype("float32") / 64, b.astype("float32")])
        yield name, ("QConv", "Conv"), 2.0 * m * oh * oh * c * k * k, int8, fp32
    for name, (c, h, s) in DEPTHWISE.items():
        if only and only not in name:
            continue
        x = rng.integers(0, 256, (1, c, h, h)).astype("uint8")
        w = rng.integers(-half, half, (c, 1, 3, 3)).astype("int8")
        b = rng.integers(-1000, 1000, c).astype("int32")
        geo = {"strides": (s, s), "pads": (1,) * 4, "group": c}
        oh = (h - 1) // s + 1
        yield (name, ("QConv", "Conv"), 2.0 * c * oh * oh * 9, ({**geo, **_requant(9, c, rng)}, [x, w, b]),
               (geo, [x.astype("float32") / 64, w.astype("float32") / 64, b.astype("float32")]))
    for name, (rows, k, cols) in GEMMS.items():
        if only and only not in name:
            continue
        x, w = rng.integers(0, 256, (rows, k)).astype("uint8"), rng.integers(-half, half, (k, cols)).astype("int8")
        b = rng.integers(-1000, 1000, cols).astype("int32")
        yield (name, ("QMatMul", "MatMul"), 2.0 * rows * k * cols, (_requant(k, cols, rng), [x, w, b]),
               ({}, [x.astype("float32") / 64, w.astype("float32") / 64]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="substring of the layer names to run")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--asm", action="store_true", help="print each int8 kernel's instruction mix")
    ap.add_argument("--mcpu", help="LLVM CPU to compile for (default: this machine's)")
    ap.add_argument("--weight-bits", type=int, default=8, help="int8 weights drawn from this many bits")
    ap.add_argument("--portable", action="store_true", help="time the generic int8 rules")
    args = ap.parse_args()
    target = CpuTarget.host()
    if args.mcpu:
        target = CpuTarget(args.mcpu, target.num_cores, 16 if cpu_has(args.mcpu, "avx512f") else 8)
    options = rules.ScheduleOptions({"int8": False}) if args.portable else None
    print(f"target {target.mcpu}, {target.num_cores} cores, TVM_NUM_THREADS={os.environ['TVM_NUM_THREADS']}")
    print(f"{'layer':22s} {'int8 ms':>8s} {'GOPS':>6s} {'fp32 ms':>8s} {'GFLOPS':>6s} {'int8/fp32':>9s} "
          f"{'(of mins)':>9s}  rules")
    speedups = []
    for name, (qop, fop), ops, (qattrs, qarrays), (fattrs, farrays) in layers(args.only, args.weight_bits):
        qnode, expected = _node(qop, qattrs, qarrays, [False, True, True], target)
        fnode, _ = _node(fop, fattrs, farrays, [False] + [True] * (len(farrays) - 1), target)
        qcall, qrule, qdesc, qasm, qout = _compiled(qnode, qarrays, options)
        fcall, frule, _, _, _ = _compiled(fnode, farrays)
        assert np.array_equal(qout, expected), f"{name}: int8 kernel {qrule} differs from the reference"
        calls = {"int8": qcall, "fp32": fcall}
        if name.startswith("dw-") and not args.portable:  # the depthwise rule against the generic one it replaces
            calls["generic"], _, _, _, gout = _compiled(qnode, qarrays, rules.ScheduleOptions({"int8": False}))
            assert np.array_equal(gout, expected), f"{name}: generic int8 kernel differs from the reference"
        t = interleaved(calls, rounds=args.rounds, block=5)
        qms, fms = t["int8"]["median"] * 1e3, t["fp32"]["median"] * 1e3
        speedups.append((fms / qms, t["fp32"]["min"] / t["int8"]["min"]))
        # the ratio of the fastest runs is less sensitive to other processes on a shared machine
        vs_generic = f"; {t['generic']['median'] / t['int8']['median']:.2f}x the generic rule" if "generic" in t else ""
        print(f"{name:22s} {qms:8.3f} {ops / qms / 1e6:6.1f} {fms:8.3f} {ops / fms / 1e6:6.1f} {speedups[-1][0]:9.2f}x"
              f" {speedups[-1][1]:8.2f}x  {qrule} / {frule}{vs_generic}", flush=True)
        if args.asm:
            mix = Counter(op for op in re.findall(r"^\s+(v\w+)", qasm, re.M) if op in ASM_OPS)
            print(f"{'':22s} {qdesc}; asm: {dict(mix)}")
    if speedups:
        medians, mins = np.exp(np.mean(np.log(speedups), axis=0))
        print(f"geomean int8/fp32 speed over {len(speedups)} layers: {medians:.2f}x (medians), "
              f"{mins:.2f}x (fastest runs)")


if __name__ == "__main__":
    main()
