"""Light model zoo: compile seconds and latency ratio nnforge / ONNX Runtime.

Weights are re-randomized (models/light_zoo.py). Each model is compiled once, checked
against ORT, then both run interleaved in this process; medians are reported.

    .venv/bin/python benchmarks/compare_ort.py [--rounds 10] [--json out.json] [MODEL ...]
"""
import argparse
import json
import math

from nnforge.bench import compare_with_ort
from nnforge.models import light_zoo


def main():
    p = argparse.ArgumentParser()
    p.add_argument("models", nargs="*", default=list(light_zoo.NAMES))
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--json")
    args = p.parse_args()
    rows = []
    print(f"{'model':14s} {'compile s':>9s} {'nnforge ms':>10s} {'ORT ms':>8s} {'ratio':>6s} {'rel err':>8s}")
    for name in args.models:
        model = light_zoo.load(name)
        r = compare_with_ort(model, light_zoo.input_feed(model), rounds=args.rounds)
        r.pop("spread")
        rows.append(dict(model=name, **r))
        print(f"{name:14s} {r['compile_s']:9.1f} {r['nnforge_ms']:10.2f} {r['ort_ms']:8.2f} "
              f"{r['ratio']:6.2f} {r['max_rel_err']:8.1e}", flush=True)
    geo = math.exp(sum(math.log(r["ratio"]) for r in rows) / len(rows))
    print(f"geometric mean ratio nnforge/ORT: {geo:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "geomean_ratio": geo}, f, indent=1)


if __name__ == "__main__":
    main()
