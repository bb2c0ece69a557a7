"""Every schedule variant of each distinct Conv/Gemm layer of a light-zoo model, next to ONNX Runtime
and stock TVM, through `nnforge bench --layers` (table on stdout, JSON + PNG in --out).

    python benchmarks/schedules.py [--model resnet50] [--rounds 5] [--limit N] [--rpc HOST:PORT --key K]

The model is the light zoo's, weights re-randomized, saved to OUT/MODEL.onnx first so the
command line can read it; the exact `nnforge bench` command is printed.
"""
from __future__ import annotations

import argparse
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("TVM_NUM_THREADS", str(len(os.sched_getaffinity(0))))

import onnx  # noqa: E402

from nnforge.cli import main as nnforge_main  # noqa: E402
from nnforge.models import light_zoo  # noqa: E402


def run(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet50", choices=light_zoo.NAMES)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--limit", type=int)
    p.add_argument("--backends", default="nnforge,ort,tvm")
    p.add_argument("--rpc")
    p.add_argument("--key", default="nnforge")
    p.add_argument("--out", default="benchmarks/out")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{args.model}.onnx")
    onnx.save(light_zoo.load(args.model), path)
    cmd = ["bench", path, "--layers", "--rounds", str(args.rounds), "--backends", args.backends,
           "-o", os.path.join(args.out, f"{args.model}_layers")]
    cmd += ["--limit", str(args.limit)] if args.limit else []
    cmd += ["--rpc", args.rpc, "--key", args.key] if args.rpc else []
    print("nnforge " + " ".join(cmd), flush=True)
    return nnforge_main(cmd)


if __name__ == "__main__":
    sys.exit(run())
