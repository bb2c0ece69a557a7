"""Run ONNX's node conformance cases for every op nnforge claims and print the per-op table.

    .venv/bin/python benchmarks/conformance.py [--json out.json] [OP ...]
"""
import argparse
import sys
import time

from nnforge.bench import write_json
from nnforge.conformance import CLAIMED_OPS, cases_for, run_case, summarize


def main():
    p = argparse.ArgumentParser()
    p.add_argument("ops", nargs="*", default=list(CLAIMED_OPS))
    p.add_argument("--json")
    args = p.parse_args()
    t0 = time.time()
    results = []
    cases = cases_for(args.ops)
    for i, (op, case) in enumerate(cases):
        results.append(run_case(op, case))
        if (i + 1) % 50 == 0:
            print(f"[{i + 1}/{len(cases)}] {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    print(summarize(results))
    print(f"{len(results)} cases in {time.time() - t0:.0f}s")
    if args.json:
        write_json(args.json, [r.__dict__ for r in results])


if __name__ == "__main__":
    main()
