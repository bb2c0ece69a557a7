"""Light model zoo: compile seconds (cold and cached) and latency ratio nnforge / ONNX Runtime.

Weights are re-randomized (models/light_zoo.py). Each model is compiled cold into a fresh
compile cache, compiled again (a cache hit), checked against ORT, then both run
interleaved in this process; medians are reported. `--against S` also compiles each model
with schedule overrides S (e.g. `layout=off`) and times the two nnforge builds interleaved
(column "vs S": default / S; robust to machine load, unlike the ORT ratio on a busy machine).

    .venv/bin/python benchmarks/compare_ort.py [--rounds 10] [--out benchmarks/out] [--schedule S]
        [--against S] [MODEL ...]

Writes compare_ort.json and compare_ort.png (latency ratio and compile seconds per model) to --out.
"""
import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import nnforge
from nnforge.bench import compare_with_ort, interleaved, write_json
from nnforge.models import light_zoo


def main():
    p = argparse.ArgumentParser()
    p.add_argument("models", nargs="*", default=list(light_zoo.NAMES))
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--schedule", help="schedule overrides, e.g. winograd=off")
    p.add_argument("--against", help="also time a build with these overrides, e.g. layout=off")
    p.add_argument("--out", default=str(Path(__file__).parent / "out"))
    args = p.parse_args()
    os.environ["NNFORGE_CACHE_DIR"] = tempfile.mkdtemp(prefix="nnforge-bench-cache-")
    rows = []
    print(f"{'model':14s} {'cold s':>7s} {'cached s':>8s} {'nnforge ms':>10s} {'ORT ms':>8s} {'ratio':>6s} "
          f"{'rel err':>8s}")
    for name in args.models:
        model = light_zoo.load(name)
        t0 = time.perf_counter()
        nnforge.compile(model, schedule=args.schedule)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        compiled = nnforge.compile(model, schedule=args.schedule)
        cached = time.perf_counter() - t0
        r = compare_with_ort(model, light_zoo.input_feed(model), compiled=compiled, rounds=args.rounds)
        r.pop("spread")
        r.update(compile_s=cold, cached_compile_s=cached)
        if args.against:
            other = nnforge.compile(model, schedule=args.against)
            feed = light_zoo.input_feed(model)
            t = interleaved({"this": lambda: compiled.run(feed), "other": lambda: other.run(feed)}, args.rounds)
            r["vs_against"] = t["this"]["median"] / t["other"]["median"]
        rows.append(dict(model=name, **r))
        print(f"{name:14s} {cold:7.1f} {cached:8.2f} {r['nnforge_ms']:10.2f} {r['ort_ms']:8.2f} "
              f"{r['ratio']:6.2f} {r['max_rel_err']:8.1e}"
              + (f"  vs {args.against}: {r['vs_against']:.2f}" if args.against else ""), flush=True)
    geo = math.exp(sum(math.log(r["ratio"]) for r in rows) / len(rows))
    print(f"geometric mean ratio nnforge/ORT: {geo:.2f}")
    out = Path(args.out)
    write_json(out / "compare_ort.json", {"rows": rows, "geomean_ratio": geo})
    plot(rows, geo, out / "compare_ort.png")
    print(f"wrote {out / 'compare_ort.json'} and {out / 'compare_ort.png'}")


def plot(rows, geo, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["model"] for r in rows]
    fig, (lat, comp) = plt.subplots(1, 2, figsize=(12, 4.5))
    lat.bar(names, [r["ratio"] for r in rows])
    lat.axhline(1.0, color="black", lw=0.8)
    lat.set_title(f"latency nnforge / ORT (medians), geomean {geo:.2f}")
    comp.bar(names, [r["compile_s"] for r in rows], label="cold")
    comp.bar(names, [r["cached_compile_s"] for r in rows], label="cached")
    comp.set_title("compile seconds")
    comp.legend()
    for ax in (lat, comp):
        ax.tick_params(axis="x", rotation=45)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
