"""The `nnforge` command line: compile, run, inspect, bench, optimize, rules."""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _shapes(items) -> dict:
    """Parse repeated `NAME=1,3,224,224` options."""
    out = {}
    for item in items or []:
        name, _, dims = item.rpartition("=")
        if not name or not dims:
            raise SystemExit(f"nnforge: error: --shape expects NAME=d1,d2,..., got {item!r}")
        out[name] = tuple(int(d) for d in dims.split(","))
    return out


def _progress(msg: str):
    print(f"[nnforge] {msg}", file=sys.stderr, flush=True)


def cmd_compile(args):
    import nnforge

    t0 = time.time()
    from .codegen.rules import ScheduleOptions

    cm = nnforge.compile(args.model, target=args.target, input_shapes=_shapes(args.shape),
                         schedule=ScheduleOptions.parse(args.schedule, args.measure), progress=_progress,
                         cache=not args.no_cache)
    cm.export(args.output)
    print(f"compiled {args.model} for {args.target} in {time.time() - t0:.1f}s -> {args.output}")


def cmd_run(args):
    import nnforge

    model = nnforge.load(args.artifact)
    feeds = {}
    for item in args.input or []:
        name, _, path = item.partition("=")
        feeds[name] = np.load(path, allow_pickle=False)
    outs = model.run(feeds)
    for (name, _, _), a in zip(model.outputs, outs):
        print(f"{name}: {a.dtype}{list(a.shape)} min {a.min() if a.size else 0:.6g} "
              f"max {a.max() if a.size else 0:.6g}")
    if args.output:
        np.savez(args.output, **{name: a for (name, _, _), a in zip(model.outputs, outs)})
        print(f"wrote {args.output}")


def cmd_inspect(args):
    from .driver import import_graph
    from .ir import graph_cost, print_graph
    from .passes import run_pipeline

    graph = run_pipeline(import_graph(args.model, _shapes(args.shape)))
    print(print_graph(graph, max_const_elems=args.max_const))
    cost = graph_cost(graph)
    print(f"\n# {len(graph.nodes)} nodes, {len(graph.constants)} constants "
          f"({sum(v.type.nbytes for v in graph.constants) / 1e6:.1f} MB)")
    print(f"# {cost.flops / 1e9:.3f} GFLOPs, {cost.bytes_read / 1e6:.1f} MB read, "
          f"{cost.bytes_written / 1e6:.1f} MB written")
    print("# op histogram: " + ", ".join(f"{op} {n}" for op, n in graph.op_histogram().items()))
    if args.schedules:
        _print_schedules(graph, args)


def _print_schedules(graph, args):
    """Per node: the rule chosen, its schedule, and every candidate with its estimated time."""
    from .codegen.cpu import lower
    from .codegen.kernel import CpuTarget
    from .codegen.rules import ScheduleOptions

    lowered = lower(graph, CpuTarget.host(), options=ScheduleOptions.parse(args.schedule, args.measure))
    print("\n# schedules (* = chosen)")
    for n in lowered.nodes:
        print(f"{n.node:28s} {n.op:16s} {n.rule:24s} {n.schedule}")
        print(f"{'':28s}   candidates: {n.candidates}")


def cmd_bench(args):
    import onnx

    from .bench import compare_with_ort
    from .driver import import_graph
    from .passes.manager import random_feeds

    model = onnx.load(args.model)
    feeds = random_feeds(import_graph(model, _shapes(args.shape)))
    r = compare_with_ort(model, feeds, rounds=args.rounds, input_shapes=_shapes(args.shape))
    print(f"{'':10s} {'median ms':>10s} {'min ms':>8s} {'max ms':>8s}")
    for k in ("nnforge", "ort"):
        s = r["spread"][k]
        print(f"{k:10s} {s['median'] * 1e3:10.2f} {s['min'] * 1e3:8.2f} {s['max'] * 1e3:8.2f}")
    print(f"ratio nnforge/ORT {r['ratio']:.2f}   compile {r['compile_s']:.1f}s   "
          f"max rel err {r['max_rel_err']:.2e}")


def cmd_optimize(args):
    import onnx

    from .passes.rewrite import optimize_model

    split = lambda text: [n for n in (text or "").split(",") if n]  # noqa: E731
    model, report = optimize_model(onnx.load(args.model), split(args.rules) or None, split(args.disable))
    onnx.save(model, args.output)
    print(f"{args.model} -> {args.output}: {report}")


def cmd_rules(args):
    from .passes.rewrite import RULES, verdict_of

    for rule in RULES:
        if args.action == "list":
            print(f"{rule.name:30s} {rule.lhs}  =>  {rule.rhs}")
        else:
            v = verdict_of(rule)
            status = "proved+tested" if v.ok else f"REFUSED: {v.message} {v.counterexample or ''}"
            print(f"{rule.name:30s} {status:14s} z3 {v.proof_s * 1e3:7.1f} ms  numeric "
                  f"{v.numeric_s * 1e3:6.1f} ms  examples {v.examples}")


def _schedule_args(p):
    p.add_argument("--schedule", help="rule family overrides, e.g. winograd=off,strassen=on")
    p.add_argument("--measure", action="store_true",
                   help="time candidate schedules on this machine (cached) instead of the cost model")


def main(argv=None) -> int:
    """Entry point of the `nnforge` command."""
    from .errors import NnforgeError

    p = argparse.ArgumentParser(prog="nnforge", description="ONNX -> nnforge IR -> TVM compiler")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compile", help="compile an ONNX model to an artifact directory")
    c.add_argument("model")
    c.add_argument("-o", "--output", required=True)
    c.add_argument("--target", default="cpu")
    c.add_argument("--shape", action="append", help="fix an input shape: NAME=1,3,224,224")
    _schedule_args(c)
    c.add_argument("--no-cache", action="store_true", help="do not use the compile cache")
    c.set_defaults(fn=cmd_compile)
    r = sub.add_parser("run", help="run a compiled artifact on .npy inputs")
    r.add_argument("artifact")
    r.add_argument("--input", action="append", help="NAME=FILE.npy")
    r.add_argument("-o", "--output", help="write outputs to this .npz")
    r.set_defaults(fn=cmd_run)
    i = sub.add_parser("inspect", help="print the IR, op histogram and FLOPs of a model")
    i.add_argument("model")
    i.add_argument("--shape", action="append")
    i.add_argument("--max-const", type=int, default=8, help="print constants up to this many elements")
    i.add_argument("--schedules", action="store_true", help="explain the schedule chosen for each node")
    _schedule_args(i)
    i.set_defaults(fn=cmd_inspect)
    b = sub.add_parser("bench", help="time nnforge against ONNX Runtime")
    b.add_argument("model")
    b.add_argument("--shape", action="append")
    b.add_argument("--rounds", type=int, default=10)
    b.set_defaults(fn=cmd_bench)
    o = sub.add_parser("optimize", help="rewrite an ONNX model with verified rules (ONNX out)")
    o.add_argument("model")
    o.add_argument("-o", "--output", required=True)
    o.add_argument("--rules", help="only these rules, comma-separated")
    o.add_argument("--disable", help="leave out these rules, comma-separated")
    o.set_defaults(fn=cmd_optimize)
    rl = sub.add_parser("rules", help="list the rewrite rules, or verify them (z3 + numeric)")
    rl.add_argument("action", choices=["list", "verify"])
    rl.set_defaults(fn=cmd_rules)
    args = p.parse_args(argv)
    try:
        args.fn(args)
    except NnforgeError as e:
        print(f"nnforge: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
