"""The compile pipeline behind `nnforge.compile`: import, passes, lower, build."""
from __future__ import annotations

import os
import time
from dataclasses import asdict

from .cache import model_key, model_path, store_model
from .errors import ArtifactError, UnsupportedError
from .runtime import CompiledModel, load


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
                  progress=None, cache: bool = True) -> CompiledModel:
    """See `nnforge.compile`."""
    from .codegen.kernel import CpuTarget
    from .codegen.rules import ScheduleOptions

    if target != "cpu":
        raise UnsupportedError(f"unknown target {target!r}; available: 'cpu'")
    cpu = CpuTarget.host()
    options = schedule if isinstance(schedule, ScheduleOptions) else ScheduleOptions.parse(schedule)
    key = model_key(model, input_shapes, passes, options, cpu.to_json()) if cache else None
    if key and os.path.isdir(model_path(key)):
        try:
            compiled = load(model_path(key))
            if progress:
                progress(f"loaded from the compile cache ({model_path(key)})")
            return compiled
        except ArtifactError:  # a stale or damaged entry: compile again and replace it
            pass
    compiled = _compile_uncached(model, cpu, input_shapes, passes, options, progress)
    if key:
        store_model(compiled, key)
    return compiled


def _compile_uncached(model, cpu, input_shapes, passes, options, progress) -> CompiledModel:
    from .codegen.cpu import build, lower
    from .ir import verify
    from .passes import run_pipeline

    graph = import_graph(model, input_shapes, progress)
    graph = run_pipeline(graph, passes)
    verify(graph)
    lowered = lower(graph, cpu, progress, options)
    ex = build(lowered, cpu, progress)
    spec = lambda vs: [(n, t.shape, t.dtype) for n, t in vs]  # noqa: E731
    return CompiledModel(ex, lowered.params, spec(lowered.inputs), spec(lowered.outputs),
                         cpu.to_json(), executable=ex, report=[asdict(n) for n in lowered.nodes])
