"""Verified rewrites per model: TASO search vs e-graph, checked and timed in ONNX Runtime and nnforge.

For each model (light zoo with re-randomized weights, and the BERT-style block): graph cost
before/after and search time of both engines (time limit per engine), the rules fired, the
optimized ONNX (what `nnforge optimize` writes) run in ONNX Runtime against the original
(max rel. error, latency), and optionally the end-to-end latency through nnforge's CPU
backend (original vs optimized, both compiled with the default passes). Writes
benchmarks/out/rewrites.json.

ORT timing is built to survive a shared machine:
  * an optimized graph that nnforge's importer reads back as the same computation as the
    original (canonical hash) is not timed: its ratio is 1.00 by construction, marked "same graph";
  * otherwise the original, a second session of the original (the A/A noise floor) and each
    optimized model are timed interleaved (the order rotating), `--reps` times `--rounds` blocks; each rep gives a
    ratio orig/opt of medians and of minima; the table shows the median ratio over reps and
    its range, next to the A/A ratio's range;
  * ORT runs one intra-op thread by default (`--ort-threads`): with 2 cores shared by other jobs,
    a two-thread pool stalls whenever one core is taken and medians swing 2-5x.
Verdict per engine: "faster" when the opt ratio's range lies above the A/A range, "slower" when
below it, else "same (noise)". Column "ORT ops" says how the op mix ONNX Runtime runs after its
own graph optimizations (conv+BN folding, conv+relu and MatMul+Add fusion, ...) differs from the
original's ("same": our rewrites only did what ORT does itself).

`--qkv-forms SxD` instead times, in ONNX Runtime, the BERT block with its Q/K/V projections written
in each merged form a rule could produce (one MatMul/Gemm + Split on the last axis, a batched
MatMul with weight [3,K,N] + Split on the leading axis, a merged MatMul + Reshape [S,3,D] +
Transpose + Split on the leading axis, the transposed Gemm W^T x^T + Split on rows) against
the three MatMuls: the search should merge only if one of them wins.

    .venv/bin/python benchmarks/rewrites.py [--time-limit 10] [--reps 5] [--rounds 6] [--no-compile] [MODEL ...]
    .venv/bin/python benchmarks/rewrites.py --qkv-forms 64x256 [--ort-threads 1]
"""
import argparse
import collections
import os
import statistics
import subprocess
import tempfile

import numpy as np

import nnforge
from nnforge.bench import interleaved, ort_session, write_json
from nnforge.errors import NnforgeError
from nnforge.frontend.onnx import import_model
from nnforge.models import light_zoo
from nnforge.models.bert import bert_block
from nnforge.passes.rewrite import ENGINES, optimize_model
from nnforge.passes.rewrite.search import canonical_hash

MODELS = ("inception_v1", "inception_v2", "squeezenet", "resnet50", "densenet121", "bert")


def load(name):
    if name == "bert":
        model = bert_block(seq=64, dim=256)
        return model, {"x": np.random.default_rng(0).standard_normal((64, 256)).astype(np.float32)}
    model = light_zoo.load(name)
    return model, light_zoo.input_feed(model)


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def fired(report):
    return ", ".join(f"{k} x{v}" for k, v in collections.Counter(report.fired).most_common()) or "none"


def ort_ratios(sessions: dict, feeds: dict, reps: int, rounds: int) -> dict:
    """label -> {"median": [orig/label per rep, medians], "min": [same, minima], "ms": median ms}
    for every session but "original"; "original again" is the A/A noise floor."""
    per_rep = collections.defaultdict(lambda: {"median": [], "min": [], "ms": []})
    labels = list(sessions)
    for rep in range(reps):
        order = labels[rep % len(labels):] + labels[:rep % len(labels)]  # no session always goes first
        t = interleaved({k: (lambda s=sessions[k]: s.run(None, feeds)) for k in order}, rounds=rounds, block=3)
        for k, v in t.items():
            per_rep[k]["median"].append(t["original"]["median"] / v["median"])
            per_rep[k]["min"].append(t["original"]["min"] / v["min"])
            per_rep[k]["ms"].append(v["median"] * 1e3)
    return {k: {**v, "ms": statistics.median(v["ms"])} for k, v in per_rep.items()}


def ort_op_mix(model) -> collections.Counter:
    """op type -> count in the graph ONNX Runtime runs after its own optimizations."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as d:
        so = ort.SessionOptions()
        so.optimized_model_filepath = os.path.join(d, "optimized.onnx")
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)


def op_mix_change(before: collections.Counter, after: collections.Counter) -> str:
    diff = {k: after[k] - before[k] for k in before | after if after[k] != before[k]}
    return ", ".join(f"{d:+d} {k}" for k, d in sorted(diff.items())) or "same"


def verdict(ratios: list, noise: list) -> str:
    if min(ratios) > max(noise):
        return "faster"
    if max(ratios) < min(noise):
        return "slower"
    return "same (noise)"


def measure(name, args):
    model, feeds = load(name)
    row = {"model": name}
    optimized, original_hash = {}, canonical_hash(import_model(model))
    for engine in ENGINES:
        out, report = optimize_model(model, engine=engine, time_limit=args.time_limit)
        same = canonical_hash(import_model(out)) == original_hash
        if not same:
            optimized[engine] = out
        row[engine] = {"cost_before_us": report.cost_before * 1e6, "cost_after_us": report.cost_after * 1e6,
                       "search_s": report.seconds, "fired": fired(report), "report": str(report),
                       "same_graph": same}
        print(f"  {engine}: {report}{' [exports the same graph]' if same else ''}", flush=True)
    sessions = {"original": ort_session(model, args.ort_threads)}
    want = sessions["original"].run(None, feeds)
    original_ops = ort_op_mix(model)
    for e, m in optimized.items():
        sessions[e] = ort_session(m, args.ort_threads)
        row[e]["ort_ops"] = op_mix_change(original_ops, ort_op_mix(m))
        row[e]["ort_rel_err"] = max(rel_err(a, b) for a, b in zip(sessions[e].run(None, feeds), want))
    if optimized:
        sessions["original again"] = ort_session(model, args.ort_threads)
        ratios = ort_ratios(sessions, feeds, args.reps, args.rounds)
        row["ort_ms_original"] = ratios["original"]["ms"]
        row["ort_noise"] = ratios["original again"]
        for e in optimized:
            row[e]["ort"] = ratios[e]
            row[e]["ort_verdict"] = verdict(ratios[e]["median"], ratios["original again"]["median"])
    if not args.no_compile:
        best = min(ENGINES, key=lambda e: row[e]["cost_after_us"])
        try:
            plain, opt = nnforge.compile(model), nnforge.compile(optimized.get(best, model))
        except NnforgeError as e:  # report and go on: the other columns still stand
            row["nnforge_error"] = str(e)
            print(f"  nnforge compile failed: {e}", flush=True)
            return row
        row["nnforge_rel_err"] = rel_err(opt.run(feeds)[0], want[0])
        t = interleaved({"original": lambda: plain.run(feeds), "optimized": lambda: opt.run(feeds)},
                        rounds=args.reps * args.rounds)
        row["nnforge_ms"] = {k: v["median"] * 1e3 for k, v in t.items()}
        print(f"  nnforge ms {row['nnforge_ms']}, rel err {row['nnforge_rel_err']:.1e}", flush=True)
    return row


def spread(xs) -> str:
    return f"{statistics.median(xs):.2f} [{min(xs):.2f}-{max(xs):.2f}]"


def ort_cells(r, e) -> str:
    if r[e]["same_graph"]:
        return f"{'-':>7s} {'1.00 (same graph)':>23s} {'':>17s} {'':>12s} {'same':>10s}"
    o = r[e]["ort"]
    return (f"{r[e]['ort_rel_err']:7.0e} {spread(o['median']):>23s} {spread(o['min']):>17s} "
            f"{r[e]['ort_verdict']:>12s} {r[e]['ort_ops']:>10s}")


def qkv_forms(seq: int, dim: int) -> dict:
    """label -> BERT block (onnx) whose q, k, v [seq, dim] come from one merged form of the projections."""
    from onnx import helper, numpy_helper

    base = bert_block(seq, dim)
    w = {i.name: numpy_helper.to_array(i) for i in base.graph.initializer}
    wc = np.concatenate([w["wq"], w["wk"], w["wv"]], 1)
    bc = np.concatenate([w["bq"], w["bk"], w["bv"]])
    three = np.array([dim] * 3, np.int64)
    node = helper.make_node
    squeeze = [node("Reshape", [f"{h}3", "s2"], [h]) for h in "qkv"]  # [1, S, D] -> [S, D]
    forms = {
        "MatMul+Add, Split last axis": (
            [node("MatMul", ["x", "wc"], ["m"]), node("Add", ["m", "bc"], ["mb"]),
             node("Split", ["mb", "sp"], list("qkv"), axis=1)], dict(wc=wc, bc=bc, sp=three)),
        "Gemm, Split last axis": (
            [node("Gemm", ["x", "wc", "bc"], ["mb"]), node("Split", ["mb", "sp"], list("qkv"), axis=1)],
            dict(wc=wc, bc=bc, sp=three)),
        "MatMul w[3,K,N], Split axis 0": (
            [node("MatMul", ["x", "w3"], ["m"]), node("Add", ["m", "b3"], ["mb"]),
             node("Split", ["mb", "sp"], ["q3", "k3", "v3"], axis=0), *squeeze],
            dict(w3=np.stack([w["wq"], w["wk"], w["wv"]]), b3=bc.reshape(3, 1, dim), sp=np.ones(3, np.int64),
                 s2=np.array([seq, dim], np.int64))),
        "MatMul+Add, Reshape [S,3,D], Transpose, Split axis 0": (
            [node("MatMul", ["x", "wc"], ["m"]), node("Add", ["m", "bc"], ["mb"]),
             node("Reshape", ["mb", "s3"], ["r"]), node("Transpose", ["r"], ["t"], perm=[1, 0, 2]),
             node("Split", ["t", "sp"], ["q3", "k3", "v3"], axis=0), *squeeze],
            dict(wc=wc, bc=bc, s3=np.array([seq, 3, dim], np.int64), sp=np.ones(3, np.int64),
                 s2=np.array([seq, dim], np.int64))),
        "Gemm W^T x^T, Split rows, Transposes": (
            [node("Gemm", ["wt", "x", "bt"], ["mt"], transB=1),
             node("Split", ["mt", "sp"], ["qt", "kt_", "vt"], axis=0),
             *[node("Transpose", [f"{h}t" if h != "k" else "kt_"], [h], perm=[1, 0]) for h in "qkv"]],
            dict(wt=np.ascontiguousarray(wc.T), bt=bc.reshape(-1, 1), sp=three)),
    }
    g = base.graph
    rest = [n for n in g.node if n.name not in ("q_mm", "k_mm", "v_mm", "q", "k", "v")]
    keep = [i for i in g.initializer if i.name not in ("wq", "wk", "wv", "bq", "bk", "bv")]
    out = {"three MatMul+Add (original)": base}
    for label, (front, consts) in forms.items():
        inits = keep + [numpy_helper.from_array(np.ascontiguousarray(v), k) for k, v in consts.items()]
        graph = helper.make_graph(front + rest, label, g.input, g.output, initializer=inits)
        out[label] = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    return out


def time_qkv_forms(size: str, args):
    seq, dim = (int(v) for v in size.split("x"))
    feeds = {"x": np.random.default_rng(0).standard_normal((seq, dim)).astype(np.float32)}
    forms = qkv_forms(seq, dim)
    sessions = {k: ort_session(m, args.ort_threads) for k, m in forms.items()}
    sessions["original"] = sessions.pop("three MatMul+Add (original)")
    want = sessions["original"].run(None, feeds)[0]
    errs = {k: rel_err(s.run(None, feeds)[0], want) for k, s in sessions.items()}
    sessions["original again"] = ort_session(forms["three MatMul+Add (original)"], args.ort_threads)
    ratios = ort_ratios(sessions, feeds, args.reps, args.rounds)
    print(f"BERT block {seq}x{dim}, ORT {args.ort_threads or 'all'} thread(s): orig/form latency, median over "
          f"{args.reps} interleaved runs [range]")
    print(f"{'Q/K/V form':55s} {'rel err':>8s} {'ms':>8s} {'orig/form (medians)':>23s} {'orig/form (minima)':>19s}")
    for k, r in ratios.items():
        print(f"{k:55s} {errs.get(k, 0.0):8.0e} {r['ms']:8.3f} {spread(r['median']):>23s} {spread(r['min']):>19s}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("models", nargs="*", default=list(MODELS))
    p.add_argument("--time-limit", type=float, default=10.0, help="search budget per engine (s)")
    p.add_argument("--reps", type=int, default=5, help="interleaved timing runs (one ratio each)")
    p.add_argument("--rounds", type=int, default=6, help="blocks of 3 calls per session per run")
    p.add_argument("--ort-threads", type=int, default=1, help="ONNX Runtime intra-op threads (0: all cores)")
    p.add_argument("--no-compile", action="store_true", help="skip the nnforge end-to-end timing")
    p.add_argument("--qkv-forms", metavar="SxD", help="time the merged Q/K/V forms of a BERT block instead")
    args = p.parse_args()
    args.ort_threads = args.ort_threads or None
    if args.qkv_forms:
        return time_qkv_forms(args.qkv_forms, args)
    load_avg = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"machine load: {load_avg}")
    rows = []
    for name in args.models:
        print(name, flush=True)
        rows.append(measure(name, args))
    print(f"\nORT: orig/opt latency, median over {args.reps} interleaved runs [range]; 'A/A' = original vs "
          f"itself (noise floor); {args.ort_threads or 'all'} ORT thread(s)")
    print(f"{'model':13s} {'engine':7s} {'cost us':>9s} {'after us':>9s} {'search s':>8s} {'ORT err':>7s} "
          f"{'orig/opt (medians)':>23s} {'orig/opt (minima)':>17s} {'verdict':>12s} {'ORT ops':>10s} "
          f"{'A/A (medians)':>23s}")
    for r in rows:
        noise = spread(r["ort_noise"]["median"]) if "ort_noise" in r else "-"
        for e in ENGINES:
            print(f"{r['model']:13s} {e:7s} {r[e]['cost_before_us']:9.0f} {r[e]['cost_after_us']:9.0f} "
                  f"{r[e]['search_s']:8.1f} {ort_cells(r, e)} {noise:>23s}")
        if "nnforge_ms" in r:
            n = r["nnforge_ms"]
            print(f"{'':13s} nnforge original {n['original']:.2f} ms, optimized {n['optimized']:.2f} ms "
                  f"({n['original'] / n['optimized']:.2f}x), rel err {r['nnforge_rel_err']:.1e}")
    for r in rows:
        print(f"{r['model']}: TASO fired {r['taso']['fired']}; e-graph fired {r['egraph']['fired']}")
    path = write_json(os.path.join(os.path.dirname(__file__), "out", "rewrites.json"),
                      {"load": load_avg, "args": vars(args), "rows": rows})
    load_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"wrote {path}; machine load after: {load_after}")


if __name__ == "__main__":
    main()
