"""Per-kernel time of a model compiled by nnforge: where the milliseconds go.

Each distinct kernel of the model is compiled alone and timed on random inputs of
its node's types, in the layouts the compiler chooses (NCHW16c between convs, see
codegen/layout.py; `--nchw`: every value NCHW); times are summed per op and the slowest
nodes listed. The layout transforms the compiled model inserts are not timed.

    .venv/bin/python benchmarks/profile_kernels.py resnet50        # a light-zoo name
    .venv/bin/python benchmarks/profile_kernels.py model.onnx
"""
import argparse
import os

os.environ.setdefault("TVM_NUM_THREADS", "2")

import numpy as np
import tvm

from nnforge.codegen.cpu import _LayoutFlow
from nnforge.codegen.kernel import CpuTarget
from nnforge.codegen.layout import assign_blocks
from nnforge.codegen.rules import lower_node
from nnforge.driver import import_graph
from nnforge.models import light_zoo
from nnforge.passes import run_pipeline
from nnforge.passes.manager import random_feeds


def to_blocks(a: np.ndarray, block: int) -> np.ndarray:
    """NCHW -> NCHW{block}c (as it is for block 0)."""
    if not block:
        return a
    n, c, h, w = a.shape
    return np.ascontiguousarray(a.reshape(n, c // block, block, h, w).transpose(0, 1, 3, 4, 2))


def from_blocks(a: np.ndarray, block: int) -> np.ndarray:
    """NCHW{block}c -> NCHW (as it is for block 0)."""
    if not block:
        return a
    n, cb, h, w, b = a.shape
    return np.ascontiguousarray(a.transpose(0, 1, 4, 2, 3).reshape(n, cb * b, h, w))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--nchw", action="store_true", help="every value NCHW (no channel blocks)")
    args = p.parse_args()
    model = light_zoo.load(args.model) if args.model in light_zoo.NAMES else args.model
    graph = run_pipeline(import_graph(model))
    target = CpuTarget.host()
    dev = tvm.cpu()
    env = dict(random_feeds(graph))
    rows, cache = [], {}
    blocks = {} if args.nchw else assign_blocks(graph, target.vector_lanes)
    flow = _LayoutFlow(target)  # where each value is stored, as codegen/cpu.py lowers the graph
    for node in graph.nodes:
        ln = flow.lower_node(node, blocks)
        kernel = lower_node(ln)
        on_blocks = ln.op != "Conv" and ln.out_block  # the kernel took the stored 5-D types
        in_blocks = ln.blocks if on_blocks else kernel.in_blocks
        out_block = ln.out_block if on_blocks else kernel.out_block
        flow.stored[node.outputs[0].name] = out_block
        arrays = [to_blocks(v.data if v.is_constant else env[v.name], in_blocks[i] if i < len(in_blocks) else 0)
                  for i, v in enumerate(node.inputs)]
        key = (node.op, str(kernel.func))
        if key not in cache:
            lib = tvm.compile(kernel.func.with_attr("global_symbol", "k"), target=target.tvm_target())
            cache[key] = lib.mod
        params = [arrays[a] if isinstance(a, int) else a for a in kernel.args]
        outs = [np.zeros(to_blocks(np.empty(v.type.shape, v.type.dtype), out_block if k == 0 else 0).shape,
                         v.type.dtype) for k, v in enumerate(node.outputs)]
        targs = [tvm.runtime.tensor(np.array(x, order="C"), dev) for x in params + outs]
        # the best of 5 means of 10 runs: on a shared machine a median counts other processes' time
        sec = min(cache[key].time_evaluator("k", dev, number=10, repeat=5)(*targs).results)
        for k, (v, o) in enumerate(zip(node.outputs, targs[len(params):])):
            env[v.name] = from_blocks(o.numpy(), out_block if k == 0 else 0)
        rows.append((sec, node.op, node.name, kernel.schedule))
    total = sum(r[0] for r in rows)
    by_op = {}
    for sec, op, _, _ in rows:
        by_op[op] = by_op.get(op, 0.0) + sec
    print(f"total {total * 1e3:.2f} ms over {len(rows)} kernels")
    for op, sec in sorted(by_op.items(), key=lambda kv: -kv[1]):
        print(f"  {op:20s} {sec * 1e3:8.2f} ms  {100 * sec / total:5.1f}%")
    print(f"slowest {args.top}:")
    for sec, op, name, sched in sorted(rows, reverse=True)[:args.top]:
        print(f"  {sec * 1e3:7.3f} ms  {op:12s} {name:30s} {sched}")


if __name__ == "__main__":
    main()
