"""Per-layer 3x3 conv: direct vs Winograd F(2x2) vs F(4x4) vs im2col, timed in one process.

Layers: the 3x3 convs of ResNet-50 and VGG-19 and the 64..256-channel 56x56/28x28 ones
(batch 1, stride 1, pad 1, bias). Each variant is built by calling its rule directly, so
the cost model's choice does not matter; runs are interleaved in blocks (nnforge.bench),
medians reported. Effective GFLOPS = the direct conv's FLOPs / time. Errors are
max|y - ref| / max|ref| against the float64 reference. `--blocked`: input and output stored
NCHW16c (NCHW{lanes}c), as between two convs of a compiled model, instead of NCHW.

    .venv/bin/python benchmarks/conv.py [--out benchmarks/out] [--rounds 5] [--layers 64@56,128@28] [--blocked]
"""
import argparse
import os

os.environ.setdefault("TVM_NUM_THREADS", "2")

import numpy as np
import tvm

from nnforge.bench import interleaved, write_json
from nnforge.codegen import rules
from nnforge.codegen.kernel import CpuTarget, KernelInput, LowerNode
from nnforge.ir import get_op
from nnforge.ir.types import TensorType

VARIANTS = {"direct": "conv2d-nchwc-direct", "winograd-f2": "conv2d-winograd-f2",
            "winograd-f4": "conv2d-winograd-f4", "im2col": "conv2d-im2col"}
LAYERS = {  # channels@size -> where it comes from
    "64@56": "resnet50, 56x56", "128@28": "resnet50, 28x28", "256@14": "resnet50", "512@7": "resnet50",
    "64@224": "vgg19", "128@112": "vgg19", "256@56": "vgg19, 56x56", "512@28": "vgg19, 28x28", "512@14": "vgg19",
    "128@56": "56x56", "64@28": "28x28", "256@28": "28x28",
}


def conv_node(c: int, hw: int, rng, block: int = 0) -> tuple:
    """A batch-1 3x3 pad-1 Conv node with bias and constant weights, and its input arrays
    (NCHW; the node reads and writes NCHW{block}c when `block`)."""
    x = rng.standard_normal((1, c, hw, hw)).astype("float32")
    w = (rng.standard_normal((c, c, 3, 3)) / np.sqrt(9 * c)).astype("float32")
    b = rng.standard_normal(c).astype("float32")
    opdef = get_op("Conv")
    attrs = opdef.check_attrs({"pads": (1, 1, 1, 1)}, "conv")
    ins = [KernelInput(TensorType.of(x)), KernelInput(TensorType.of(w), w), KernelInput(TensorType.of(b), b)]
    outs = opdef.infer_types([i.type for i in ins], attrs, "conv")
    blocks = (block,) if block else ()
    return LowerNode("Conv", f"conv{c}@{hw}", attrs, ins, outs, CpuTarget.host(), blocks, block), [x, w, b]


def to_blocks(a: np.ndarray, block: int) -> np.ndarray:
    """NCHW -> NCHW{block}c (NCHW itself for block 0)."""
    if not block:
        return a
    n, c, h, w = a.shape
    return np.ascontiguousarray(a.reshape(n, c // block, block, h, w).transpose(0, 1, 3, 4, 2))


def build(node: LowerNode, rule_name: str):
    """Compile one rule's kernel for `node`: (kernel, packed function, tvm args) or None."""
    rules._load_rules()
    r = next(r for r in rules.RULES["Conv"] if r.name == rule_name)
    kernel = r.fn(node)
    if kernel is None:
        return None
    f = tvm.compile(kernel.func.with_attr("global_symbol", "main"), target=node.target.tvm_target())["main"]
    return kernel, f, r


def bench_layer(key: str, rounds: int, rng, block: int = 0) -> dict:
    c, hw = map(int, key.split("@"))
    node, arrays = conv_node(c, hw, rng, block)
    dev = tvm.cpu()
    ref = to_blocks(get_op("Conv").run([a.astype(np.float64) for a in arrays], node.attrs)[0], block)
    arrays[0] = to_blocks(arrays[0], block)
    direct_flops = get_op("Conv").cost([i.type for i in node.inputs], node.outputs, node.attrs).flops
    fns, info = {}, {}
    for label, rule_name in VARIANTS.items():
        built = build(node, rule_name)
        if built is None:
            continue
        kernel, f, r = built
        if (kernel.in_blocks[0], kernel.out_block) != (block, block):
            continue  # a variant that does not read and write the blocked layout (im2col)
        args = [tvm.runtime.tensor(np.ascontiguousarray(arrays[a] if isinstance(a, int) else a), dev)
                for a in kernel.args] + [tvm.runtime.tensor(np.zeros(ref.shape, "float32"), dev)]
        f(*args)
        y = args[-1].numpy()
        err = float(np.abs(y - ref).max() / np.abs(ref).max())
        fns[label] = (lambda f, a: lambda: f(*a))(f, args)
        info[label] = {"rel_err": err, "flops": kernel.extra.get("flops", direct_flops),
                       "est_ms": rules.estimate_seconds(node, r, kernel) * 1e3, "schedule": kernel.schedule}
    times = interleaved(fns, rounds=rounds, block=3 if c * hw * hw > 2e6 else 5)
    t_direct = times["direct"]["median"]
    for label, t in times.items():
        info[label].update(ms=t["median"] * 1e3, gflops=direct_flops / t["median"] / 1e9,
                           speedup=t_direct / t["median"])
    return {"layer": key, "source": LAYERS.get(key, ""), "direct_flops": direct_flops, "variants": info}


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["layer"] for r in rows]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(VARIANTS)
    for i, v in enumerate(VARIANTS):
        ax.bar([j + i * width for j in range(len(rows))],
               [r["variants"].get(v, {}).get("speedup", 0) for r in rows], width, label=v)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(2.0, color="gray", lw=0.8, ls="--")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))], labels)
    ax.set_ylabel("speedup vs direct (median)")
    ax.set_xlabel("3x3 conv layer (channels@size, batch 1)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--layers", default=",".join(LAYERS))
    p.add_argument("--blocked", action="store_true", help="NCHW{lanes}c input and output")
    args = p.parse_args()
    block = CpuTarget.host().vector_lanes if args.blocked else 0
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    head = "".join(f"{v:>28s}" for v in VARIANTS)
    print(f"{'layer':8s} {'GFLOP':>6s}{head}\n{'':15s}" + "      ms  GFLOPS  x  rel.err" * len(VARIANTS))
    for key in args.layers.split(","):
        row = bench_layer(key, args.rounds, rng, block)
        rows.append(row)
        cells = "".join(
            f"{v['ms']:8.3f} {v['gflops']:6.1f} {v['speedup']:4.2f} {v['rel_err']:7.1e}" if v else f"{'-':>28s}"
            for v in (row["variants"].get(name) for name in VARIANTS))
        print(f"{key:8s} {row['direct_flops'] / 1e9:6.2f}{cells}", flush=True)
    write_json(os.path.join(args.out, "conv.json"),
               {"target": CpuTarget.host().to_json(), "threads": os.environ["TVM_NUM_THREADS"],
                "layout": f"NCHW{block}c" if block else "NCHW", "rows": rows})
    plot(rows, os.path.join(args.out, "conv.png"))
    print(f"wrote {args.out}/conv.json, conv.png")


if __name__ == "__main__":
    main()
