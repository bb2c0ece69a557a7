"""Per-kernel time of a model compiled by nnforge: where the milliseconds go.

Each distinct kernel of the model is compiled alone and timed on random inputs of
its node's types; times are summed per op and the slowest nodes listed.

    .venv/bin/python benchmarks/profile_kernels.py resnet50        # a light-zoo name
    .venv/bin/python benchmarks/profile_kernels.py model.onnx
"""
import argparse
import os
import time

import numpy as np
import tvm

from nnforge.codegen.kernel import CpuTarget, LowerNode
from nnforge.codegen.rules import lower_node
from nnforge.driver import import_graph
from nnforge.models import light_zoo
from nnforge.passes import run_pipeline
from nnforge.passes.manager import random_feeds


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args()
    model = light_zoo.load(args.model) if args.model in light_zoo.NAMES else args.model
    graph = run_pipeline(import_graph(model))
    target = CpuTarget.host()
    dev = tvm.cpu()
    env = dict(random_feeds(graph))
    rows, cache = [], {}
    for node in graph.nodes:
        arrays = [v.data if v.is_constant else env[v.name] for v in node.inputs]
        ln = LowerNode.of(node, target)
        kernel = lower_node(ln)
        key = (node.op, str(kernel.func))
        if key not in cache:
            lib = tvm.compile(kernel.func.with_attr("global_symbol", "k"), target=target.tvm_target())
            cache[key] = lib.mod
        params = [arrays[a] if isinstance(a, int) else a for a in kernel.args]
        outs = [np.zeros(v.type.shape, v.type.dtype) for v in node.outputs]
        targs = [tvm.runtime.tensor(np.array(x, order="C"), dev) for x in params + outs]
        sec = cache[key].time_evaluator("k", dev, number=10, repeat=3)(*targs).median
        for v, o in zip(node.outputs, targs[len(params):]):
            env[v.name] = o.numpy()
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
