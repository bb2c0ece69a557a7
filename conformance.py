"""ONNX node conformance: run ONNX's own node test cases through `nnforge.backend`.

Each case (`onnx.backend.test.case.node.collect_testcases()`) is a small model with
inputs and expected outputs. A case counts for an op when every node of its model
is that op (the "_expanded" function-body variants use other ops and are skipped).
Outcomes: "pass"; "unsupported" (nnforge raised UnsupportedError: a clear refusal,
e.g. a dtype or attribute value we do not implement); "fail" (wrong answer, or
any other error: these are bugs).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

# The ops nnforge claims (the backbone issue's list).
CLAIMED_OPS = (
    "Conv ConvTranspose Gemm MatMul BatchNormalization LRN Relu LeakyRelu PRelu Clip Sigmoid "
    "HardSigmoid HardSwish Tanh Erf Softmax LogSoftmax LayerNormalization Add Sub Mul Div Pow Sqrt "
    "Exp Log Neg Abs Reciprocal Sum Max Min Mean MaxPool AveragePool GlobalAveragePool GlobalMaxPool "
    "Concat Split Slice Reshape Transpose Flatten Squeeze Unsqueeze Gather GatherElements Cast Shape "
    "ConstantOfShape Constant Identity Dropout Resize Pad ReduceMean ReduceSum ReduceMax Where Expand "
    "Equal Less Greater And Not IsNaN Range Tile").split()


@dataclass
class CaseResult:
    op: str
    name: str
    outcome: str  # pass | unsupported | fail
    reason: str = ""


def cases_for(ops=CLAIMED_OPS) -> list:
    """(op, TestCase) for every ONNX node test whose nodes are all one op of `ops`."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    out = []
    for case in cases:
        types = {n.op_type for n in case.model.graph.node}
        if len(types) == 1 and next(iter(types)) in ops:
            out.append((next(iter(types)), case))
    return out


def _compare(got, want, rtol, atol) -> str:
    if got.shape != want.shape:
        return f"shape {got.shape} != expected {want.shape}"
    if got.dtype != want.dtype:
        return f"dtype {got.dtype} != expected {want.dtype}"
    if want.dtype.kind in "fc":
        ok = np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    else:
        ok = np.array_equal(got, want)
    if not ok:
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        return f"wrong values (max abs diff {np.nanmax(diff):.3g})"
    return ""


def run_case(op: str, case) -> CaseResult:
    """Compile and run one case; never raises."""
    from . import backend
    from .errors import UnsupportedError

    try:
        rep = backend.prepare(case.model)
        for inputs, outputs in case.data_sets:
            got = rep.run(list(inputs))
            for i, (g, w) in enumerate(zip(got, outputs)):
                problem = _compare(np.asarray(g), backend.as_array(w), case.rtol, case.atol)
                if problem:
                    return CaseResult(op, case.name, "fail", f"output {i}: {problem}")
        return CaseResult(op, case.name, "pass")
    except UnsupportedError as e:
        return CaseResult(op, case.name, "unsupported", str(e).splitlines()[0])
    except Exception as e:  # any other error is a bug: report it, do not crash the run
        return CaseResult(op, case.name, "fail", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")


def summarize(results) -> str:
    """A per-op table (passed / failed / unsupported) followed by every non-pass with its reason."""
    ops = {}
    for r in results:
        ops.setdefault(r.op, {"pass": 0, "fail": 0, "unsupported": 0})[r.outcome] += 1
    lines = [f"{'op':22s} {'pass':>5s} {'fail':>5s} {'unsup':>5s}"]
    for op in sorted(ops):
        c = ops[op]
        lines.append(f"{op:22s} {c['pass']:5d} {c['fail']:5d} {c['unsupported']:5d}")
    tot = {k: sum(c[k] for c in ops.values()) for k in ("pass", "fail", "unsupported")}
    lines.append(f"{'TOTAL':22s} {tot['pass']:5d} {tot['fail']:5d} {tot['unsupported']:5d}")
    for r in results:
        if r.outcome != "pass":
            lines.append(f"  {r.outcome:11s} {r.name}: {r.reason}")
    return "\n".join(lines)
