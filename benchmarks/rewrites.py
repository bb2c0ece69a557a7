"""Verified rewrites per model: TASO search vs e-graph, checked and timed in ONNX Runtime and nnforge.

For each model (light zoo with re-randomized weights, and the BERT-style block): graph cost
before/after and search time of both engines (time limit per engine), the rules fired, the
optimized ONNX (what `nnforge optimize` writes) run in ONNX Runtime against the original
(max rel. error, latency medians interleaved in this process), and the end-to-end latency
through nnforge's CPU backend (original vs optimized, both compiled with the default passes,
which do not run the search). Writes benchmarks/out/rewrites.json.

    .venv/bin/python benchmarks/rewrites.py [--time-limit 10] [--rounds 10] [--no-compile] [MODEL ...]
"""
import argparse
import collections
import json
import os
import subprocess

import numpy as np

import nnforge
from nnforge.bench import interleaved, ort_session
from nnforge.errors import NnforgeError
from nnforge.models import light_zoo
from nnforge.models.bert import bert_block
from nnforge.passes.rewrite import optimize_model

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


def measure(name, args):
    model, feeds = load(name)
    row = {"model": name}
    optimized = {}
    for engine in ("taso", "egraph"):
        out, report = optimize_model(model, engine=engine, time_limit=args.time_limit)
        optimized[engine] = out
        row[engine] = {"cost_before_us": report.cost_before * 1e6, "cost_after_us": report.cost_after * 1e6,
                       "search_s": report.seconds, "fired": fired(report), "report": str(report)}
        print(f"  {engine}: {report}", flush=True)
    best = min(optimized, key=lambda e: row[e]["cost_after_us"])
    row["best_engine"] = best
    sessions = {"original": ort_session(model), **{e: ort_session(m) for e, m in optimized.items()}}
    want = sessions["original"].run(None, feeds)
    row["ort_rel_err"] = {e: max(rel_err(a, b) for a, b in zip(sessions[e].run(None, feeds), want))
                          for e in optimized}
    t = interleaved({k: (lambda s=s: s.run(None, feeds)) for k, s in sessions.items()}, rounds=args.rounds)
    row["ort_ms"] = {k: v["median"] * 1e3 for k, v in t.items()}
    if not args.no_compile:
        try:
            plain, opt = nnforge.compile(model), nnforge.compile(optimized[best])
        except NnforgeError as e:  # report and go on: the other columns still stand
            row["nnforge_error"] = str(e)
            print(f"  nnforge compile failed: {e}", flush=True)
            return row
        row["nnforge_rel_err"] = rel_err(opt.run(feeds)[0], want[0])
        t = interleaved({"original": lambda: plain.run(feeds), "optimized": lambda: opt.run(feeds)},
                        rounds=args.rounds)
        row["nnforge_ms"] = {k: v["median"] * 1e3 for k, v in t.items()}
        print(f"  nnforge ms {row['nnforge_ms']}, rel err {row['nnforge_rel_err']:.1e}", flush=True)
    return row


def main():
    p = argparse.ArgumentParser()
    p.add_argument("models", nargs="*", default=list(MODELS))
    p.add_argument("--time-limit", type=float, default=10.0, help="search budget per engine (s)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--no-compile", action="store_true", help="skip the nnforge end-to-end timing")
    args = p.parse_args()
    load_avg = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"machine load: {load_avg}")
    rows = []
    for name in args.models:
        print(name, flush=True)
        rows.append(measure(name, args))
    print(f"\n{'model':13s} {'cost us':>9s} {'TASO us':>9s} {'TASO s':>6s} {'egraph us':>9s} {'egraph s':>8s} "
          f"{'ORT err':>8s} {'ORT orig ms':>11s} {'ORT opt ms':>10s} {'ORT x':>6s} {'nnf orig':>8s} "
          f"{'nnf opt':>8s} {'nnf x':>6s}")
    for r in rows:
        b, ort = r["best_engine"], r["ort_ms"]
        nnf = r.get("nnforge_ms", {"original": float("nan"), "optimized": float("nan")})
        print(f"{r['model']:13s} {r['taso']['cost_before_us']:9.0f} {r['taso']['cost_after_us']:9.0f} "
              f"{r['taso']['search_s']:6.1f} {r['egraph']['cost_after_us']:9.0f} {r['egraph']['search_s']:8.1f} "
              f"{max(r['ort_rel_err'].values()):8.1e} {ort['original']:11.2f} {ort[b]:10.2f} "
              f"{ort['original'] / ort[b]:6.2f} {nnf['original']:8.2f} {nnf['optimized']:8.2f} "
              f"{nnf['original'] / nnf['optimized']:6.2f}")
    for r in rows:
        print(f"{r['model']}: TASO fired {r['taso']['fired']}; e-graph fired {r['egraph']['fired']}")
    os.makedirs(os.path.join(os.path.dirname(__file__), "out"), exist_ok=True)
    path = os.path.join(os.path.dirname(__file__), "out", "rewrites.json")
    with open(path, "w") as f:
        json.dump({"load": load_avg, "rows": rows}, f, indent=1)
    print(f"wrote {path}; machine load after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
