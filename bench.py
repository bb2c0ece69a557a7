"""Side-by-side timing of nnforge against ONNX Runtime (used by `nnforge bench` and benchmarks/).

Runs are interleaved in one process so machine noise hits both alike; medians are
reported, with the ratio nnforge/ORT. Interleaving is by short blocks (a pause, one
untimed call, then `block` timed calls of one system, then the other), not call by
call: ONNX Runtime's and TVM's worker threads keep spinning for a while after a call,
and call-by-call alternation would charge that spinning to whoever runs next
(measured here: a small ResNet looked 50x slower than it is).
"""
from __future__ import annotations

import json
import os
import statistics
import time

import numpy as np


def ort_session(model, threads: int | None = None):
    """An ONNX Runtime CPU session for an onnx.ModelProto (all cores unless `threads`)."""
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    model = _ort_compatible(model)
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _ort_compatible(model):
    """ONNX Runtime here reads IR version <= 10; newer files are re-stamped (the format is compatible)."""
    if model.ir_version > 10:
        import onnx

        model = onnx.ModelProto.FromString(model.SerializeToString())
        model.ir_version = 10
    return model


def write_json(path, obj, indent: int = 1) -> str:
    """Write `obj` as JSON to `path`, making its folder; returns the path (as a str)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=indent)
    return path


def interleaved(fns: dict, rounds: int = 10, block: int = 5, pause: float = 0.05) -> dict:
    """Median and spread (min, max) of each zero-argument callable, timed in alternating blocks.

    Args:
        fns: label -> callable.
        rounds: blocks of each callable.
        block: timed calls per block (after one untimed warm-up call).
        pause: seconds of sleep before each block, so the other system's threads go idle.
    Returns:
        label -> {"median": s, "min": s, "max": s} over all timed calls.
    """
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            time.sleep(pause)
            f()
            for _ in range(block):
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
    return {k: {"median": statistics.median(v), "min": min(v), "max": max(v)} for k, v in times.items()}


def compare_with_ort(model, feeds: dict, compiled=None, rounds: int = 10, input_shapes=None) -> dict:
    """Compile (unless given), check outputs agree, and time nnforge vs ONNX Runtime.

    Args:
        model: onnx.ModelProto.
        feeds: input name -> array.
        compiled: an already compiled nnforge model (else compiled here, and timed).
        rounds: timed rounds.
        input_shapes: passed to nnforge.compile.
    Returns:
        dict with compile_s, nnforge_ms, ort_ms, ratio, max_rel_err.
    """
    import nnforge

    compile_s = None
    if compiled is None:
        t0 = time.perf_counter()
        compiled = nnforge.compile(model, input_shapes=input_shapes)
        compile_s = time.perf_counter() - t0
    sess = ort_session(model)
    ours, ref = compiled.run(feeds), sess.run(None, feeds)
    err = max(float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(b))), 1e-30) for a, b in zip(ours, ref))
    t = interleaved({"nnforge": lambda: compiled.run(feeds), "ort": lambda: sess.run(None, feeds)}, rounds)
    return {"compile_s": compile_s, "nnforge_ms": t["nnforge"]["median"] * 1e3,
            "ort_ms": t["ort"]["median"] * 1e3, "ratio": t["nnforge"]["median"] / t["ort"]["median"],
            "max_rel_err": err, "spread": t}
