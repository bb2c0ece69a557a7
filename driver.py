"""The compile pipeline behind `nnforge.compile`: import, passes, lower, build."""
from __future__ import annotations

import time

from .errors import UnsupportedError
from .runtime import CompiledModel


def import_graph(model, input_shapes=None, progress=None):
    """An ir.Graph from a path / bytes / onnx.ModelProto (or an ir.Graph, copied)."""
    from .ir import Graph

    if isinstance(model, Graph):
        return model.copy()
    from .frontend.onnx import import_model

    t0 = time.time()
    graph = import_model(model, input_shapes=input_shapes)
    if progress:
        progress(f"imported {len(graph.nodes)} nodes in {time.time() - t0:.1f}s")
    return graph


def compile_model(model, target="cpu", input_shapes=None, passes=None, schedule=None,
                  progress=None) -> CompiledModel:
    """See `nnforge.compile`."""
    from .codegen.cpu import build, lower
    from .codegen.kernel import CpuTarget
    from .codegen.rules import ScheduleOptions
    from .ir import verify
    from .passes import run_pipeline

    if target != "cpu":
        raise UnsupportedError(f"unknown target {target!r}; available: 'cpu'")
    graph = import_graph(model, input_shapes, progress)
    graph = run_pipeline(graph, passes)
    verify(graph)
    cpu = CpuTarget.host()
    options = schedule if isinstance(schedule, ScheduleOptions) else ScheduleOptions.parse(schedule)
    lowered = lower(graph, cpu, progress, options)
    ex = build(lowered, cpu, progress)
    spec = lambda vs: [(n, t.shape, t.dtype) for n, t in vs]  # noqa: E731
    return CompiledModel(ex, lowered.params, spec(lowered.inputs), spec(lowered.outputs),
                         cpu.to_json(), executable=ex, report=lowered.nodes)
