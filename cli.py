"""The `nnforge` command line: compile, run, inspect, bench, rpc, optimize, rules."""
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


def _pipeline(args):
    """The passes for `--prune SPEC` ("prune:SPEC" before the default ones) and
    `--fuse-layers` (after them), else None (the default)."""
    from .passes import DEFAULT_PIPELINE

    fuse = fuse_layers_passes(getattr(args, "fuse_layers", "off"))
    quant = _quantize_passes(args)
    if not args.prune and not fuse and not quant:
        return None
    return [f"prune:{args.prune}"] * bool(args.prune) + [*DEFAULT_PIPELINE, *quant, *fuse]


def _quantize_passes(args) -> list:
    """`--quantize int8 --calib DIR [--calibrator NAME] [--power-of-two]` -> the quantize pass."""
    if not getattr(args, "quantize", None):
        if getattr(args, "calib", None) or getattr(args, "power_of_two", False):
            raise SystemExit("nnforge: error: --calib and --power-of-two need --quantize int8")
        return []
    if not args.calib:
        raise SystemExit("nnforge: error: --quantize int8 needs --calib DIR (a directory of .npy/.npz feeds)")
    from .passes.quantize import quantize_spec

    return [quantize_spec(args.calib, args.calibrator, args.power_of_two)]


def fuse_layers_passes(mode: str) -> list:
    """`--fuse-layers off|auto|2|3` -> the fusion passes to append (passes/fuse/layers.py)."""
    passes = {"off": [], "auto": ["fuse-layers"], "2": ["fuse-layers-2"], "3": ["fuse-layers-3"]}
    if mode not in passes:
        raise SystemExit(f"nnforge: error: --fuse-layers expects auto, off, 2 or 3, got {mode!r}")
    return passes[mode]


def cmd_compile(args):
    import nnforge

    t0 = time.time()
    from .codegen.rules import ScheduleOptions

    cm = nnforge.compile(args.model, target=args.target, input_shapes=_shapes(args.shape),
                         schedule=ScheduleOptions.parse(args.schedule, args.measure), progress=_progress,
                         cache=not args.no_cache, passes=_pipeline(args))
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

    graph = run_pipeline(import_graph(args.model, _shapes(args.shape)), _pipeline(args))
    print(print_graph(graph, max_const_elems=args.max_const))
    cost = graph_cost(graph)
    print(f"\n# {len(graph.nodes)} nodes, {len(graph.constants)} constants "
          f"({sum(v.type.nbytes for v in graph.constants) / 1e6:.1f} MB)")
    print(f"# {cost.flops / 1e9:.3f} GFLOPs, {cost.bytes_read / 1e6:.1f} MB read, "
          f"{cost.bytes_written / 1e6:.1f} MB written")
    print("# op histogram: " + ", ".join(f"{op} {n}" for op, n in graph.op_histogram().items()))
    if args.schedules:
        _print_schedules(graph, args)
    if args.target == "vta":
        from .codegen.vta.target import format_report, layer_report, place

        print("\n# VTA placement (instructions, DRAM bytes and cycles of one simulated run per layer)")
        print(format_report(layer_report(place(graph))))


def _print_schedules(graph, args):
    """Per node: the rule chosen, its schedule, and every candidate with its estimated time."""
    from .codegen.cpu import lower
    from .codegen.kernel import CpuTarget
    from .codegen.rules import ScheduleOptions

    lowered = lower(graph, CpuTarget.host(), options=ScheduleOptions.parse(args.schedule, args.measure))
    print("\n# schedules (* = chosen; layout: what the kernel reads -> writes, NCHW16c = channel-blocked)")
    for n in lowered.nodes:
        print(f"{n.node:28s} {n.op:16s} {n.rule:24s} {n.schedule}")
        print(f"{'':28s}   layout: {n.layout}")
        if n.candidates:
            print(f"{'':28s}   candidates: {n.candidates}")


def cmd_bench(args):
    from . import bench_schedules as bs

    backends = [b for b in args.backends.split(",") if b]
    unknown = sorted(set(backends) - set(bs.BACKENDS))
    if unknown:
        raise SystemExit(f"nnforge: error: unknown backend(s) {unknown}; choose from {list(bs.BACKENDS)}")
    if args.op:
        dims = [tuple(int(d) for d in s.split(",")) for s in args.shape or []]
        rows, graphs = [], [bs.op_graph(args.op, dims, bs.parse_attrs(args.attr))]
    elif args.model:
        import onnx

        from .driver import import_graph
        from .passes import run_pipeline

        model = onnx.load(args.model)
        graph = import_graph(model, _shapes(args.shape))
        _progress(f"timing the whole model ({', '.join(backends)})")
        rows = [bs.bench_model(model, graph, _shapes(args.shape), backends, rounds=args.rounds)]
        graphs = bs.layer_graphs(run_pipeline(graph)) if args.layers else []
        graphs = graphs[:args.limit] if args.limit else graphs
    else:
        raise SystemExit("nnforge: error: bench needs a MODEL or --op")
    sessions = None
    if args.rpc:
        from .codegen.rpc import sessions as rpc_sessions

        sessions = rpc_sessions(args.rpc, args.key, args.servers)
    for i, g in enumerate(graphs):
        _progress(f"layer {i + 1}/{len(graphs)}: {g.nodes[0].op} {g.nodes[0].name}")
        rows.append(bs.bench_layer(g, backends=backends, sessions=sessions, rounds=args.rounds))
    print(bs.format_table(rows))
    whole = rows[0]["results"]
    if "nnforge" in whole and "ort" in whole:
        print(f"whole model: ratio nnforge/ORT {whole['nnforge']['median'] / whole['ort']['median']:.2f}, "
              f"max rel err vs ORT {rows[0]['max_rel_err']:.2e}")
    if args.output:
        print("wrote " + ", ".join(bs.write_report(rows, args.output)))


def cmd_rpc(args):
    from .codegen.rpc import local_cluster

    with local_cluster(args.key, args.servers, args.port) as address:
        print(f"RPC tracker at {address}, {args.servers} server(s) with key {args.key!r}; "
              f"use: nnforge bench ... --rpc {address} --key {args.key}  (Ctrl-C stops)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


def cmd_optimize(args):
    import onnx

    from .passes.rewrite import optimize_model

    split = lambda text: [n for n in (text or "").split(",") if n]  # noqa: E731
    model, report = optimize_model(onnx.load(args.model), split(args.rules) or None, split(args.disable),
                                   engine=args.engine, time_limit=args.time_limit)
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


def _prune_arg(p):
    p.add_argument("--prune", metavar="SPEC", help="prune first: magnitude:0.8, block:16x1:0.9 (RxC of "
                   "W[out,in]), channel:l1:0.5 or channel:slimming:0.5")


def _quantize_args(p):
    p.add_argument("--quantize", choices=["int8"], help="post-training int8 quantization (needs --calib; "
                   "compiles without the cache, which does not key on the calibration data)")
    p.add_argument("--calib", metavar="DIR", help="calibration feeds: one .npz per feed (arrays by input "
                   "name), or one .npy per feed of a one-input model")
    p.add_argument("--calibrator", default="percentile", choices=["minmax", "percentile", "entropy"],
                   help="how activation ranges are chosen: min/max, 99.99th percentile of |x| (default) "
                        "or entropy (KL divergence)")
    p.add_argument("--power-of-two", action="store_true",
                   help="power-of-two scales: multiplier 1, one shift per layer, zero points 0 (VTA)")


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
    c.add_argument("--target", default="cpu",
                   help='cpu (this machine), vta, cuda (= {"kind":"cuda","arch":"sm_90"}) or a JSON cuda target')
    c.add_argument("--shape", action="append", help="fix an input shape: NAME=1,3,224,224")
    _schedule_args(c)
    c.add_argument("--no-cache", action="store_true", help="do not use the compile cache")
    _prune_arg(c)
    c.add_argument("--fuse-layers", default="off", metavar="auto|off|N",
                   help="compute chains of N (2, 3) convs (+MaxPool) strip by strip in one kernel; "
                        "auto: where the cost model expects a saving")
    _quantize_args(c)
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
    _prune_arg(i)
    _quantize_args(i)
    i.add_argument("--target", default="cpu", choices=["cpu", "vta"],
                   help="vta: list which layers run on VTA and which on the CPU")
    _schedule_args(i)
    i.set_defaults(fn=cmd_inspect)
    b = sub.add_parser("bench", help="time nnforge, ONNX Runtime and stock TVM; every schedule variant per layer")
    b.add_argument("model", nargs="?")
    b.add_argument("--shape", action="append", help="a model input NAME=1,3,224,224; with --op: each input's dims")
    b.add_argument("--op", help="benchmark one layer: conv2d, gemm, matmul or an IR op name")
    b.add_argument("--attr", action="append", help="with --op: an attribute NAME=VALUE, e.g. pads=1,1,1,1")
    b.add_argument("--layers", action="store_true",
                   help="with a model: also every schedule variant of each distinct Conv/Gemm/MatMul layer")
    b.add_argument("--limit", type=int, help="with --layers: at most this many layers")
    b.add_argument("--backends", default="nnforge,ort,tvm", help="any of nnforge,ort,tvm (stock TVM)")
    b.add_argument("--rounds", type=int, default=10, help="interleaved samples per system")
    b.add_argument("--rpc", metavar="HOST:PORT", help="time the schedule variants on this TVM RPC tracker's servers")
    b.add_argument("--key", default="nnforge", help="the RPC servers' key")
    b.add_argument("--servers", type=int, default=1, help="RPC sessions to spread the variants over")
    b.add_argument("-o", "--output", metavar="PREFIX", help="write PREFIX.json and PREFIX.png")
    b.set_defaults(fn=cmd_bench)
    rp = sub.add_parser("rpc", help="start a TVM RPC tracker and servers on 127.0.0.1 for `bench --rpc`")
    rp.add_argument("--servers", type=int, default=2)
    rp.add_argument("--key", default="nnforge")
    rp.add_argument("--port", type=int, default=9190, help="first port tried for the tracker")
    rp.set_defaults(fn=cmd_rpc)
    o = sub.add_parser("optimize", help="rewrite an ONNX model with verified rules (ONNX out)")
    o.add_argument("model")
    o.add_argument("-o", "--output", required=True)
    o.add_argument("--rules", help="only these rules, comma-separated")
    o.add_argument("--disable", help="leave out these rules, comma-separated")
    o.add_argument("--engine", choices=["taso", "egraph"], default="taso",
                   help="TASO backtracking search or equality saturation (e-graph)")
    o.add_argument("--time-limit", type=float, default=20.0, help="search budget in seconds")
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
