"""The compile pipeline behind `nnforge.compile`: import, passes, lower, build."""
from __future__ import annotations

import os
import time
from dataclasses import asdict, replace

from .cache import model_key, model_path, store_model
from .errors import ArtifactError, UnsupportedError
from .runtime import CompiledModel, load


def import_graph(model, input_shapes=None, progress=None):
    """An ir.Graph from a path / bytes / onnx.ModelProto (or an ir.Graph, copied). A path ending in
    .nnir is nnforge's graph text (ir/printer.py), e.g. a quantized graph with QConv nodes."""
    from .ir import Graph, parse_graph

    if isinstance(model, Graph):
        return model.copy()
    if isinstance(model, (str, os.PathLike)) and os.fspath(model).endswith(".nnir"):
        with open(model) as f:
            return parse_graph(f.read())
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

    cpu = CpuTarget.host()
    options = schedule if isinstance(schedule, ScheduleOptions) else ScheduleOptions.parse(schedule)
    if target == "vta":  # not cached: its artifact holds VTA programs besides CPU modules
        return _compile_vta(model, cpu, input_shapes, passes, options, progress)
    device, options = (cpu, options) if target == "cpu" else _gpu_target(target, options)
    key = model_key(model, input_shapes, passes, options, device.to_json()) if cache and cacheable(passes) else None
    if key and os.path.isdir(model_path(key)):
        try:
            compiled = load(model_path(key))
            if progress:
                progress(f"loaded from the compile cache ({model_path(key)})")
            return compiled
        except ArtifactError:  # a stale or damaged entry: compile again and replace it
            pass
    compiled = _compile_uncached(model, device, input_shapes, passes, options, progress)
    if key:
        store_model(compiled, key)
    return compiled


def cacheable(passes) -> bool:
    """Whether a compile running `passes` can be cached under their names: not with a Pass object
    (no name to key on) nor a pass reading files (the calibration data of "quantize:int8,calib=DIR")."""
    from .passes import get_pass

    return all(isinstance(p, str) and not get_pass(p).reads_files for p in passes or ())


def _gpu_target(target, options):
    """(CudaTarget, options) for a target that is not "cpu"/"vta": "cuda", a JSON string or a dict."""
    from .codegen.cuda import parse_target

    if not (target == "cuda" or isinstance(target, dict) or str(target).lstrip().startswith("{")):
        raise UnsupportedError(f"unknown target {target!r}; available: 'cpu', 'vta', 'cuda' "
                               f"(or a JSON object such as '{{\"kind\": \"cuda\", \"arch\": \"sm_80\"}}')")
    gpu = parse_target(target)
    if options.measure:
        raise UnsupportedError("--measure times kernels on this machine; the cuda target cannot be measured here")
    # GPU kernels read plain NCHW: no blocked CPU layouts (codegen/layout.py)
    return gpu, replace(options, overrides={**options.overrides, "layout": False})


def optimized_graph(model, input_shapes=None, passes=None, progress=None):
    """The imported graph after the passes, verified."""
    from .ir import verify
    from .passes import run_pipeline

    graph = run_pipeline(import_graph(model, input_shapes, progress), passes)
    verify(graph)
    return graph


def _compile_uncached(model, cpu, input_shapes, passes, options, progress) -> CompiledModel:
    return compile_graph(optimized_graph(model, input_shapes, passes, progress), cpu, options, progress)


def _compile_vta(model, cpu, input_shapes, passes, options, progress):
    """VTA layers as instruction streams for the simulator, the rest as CPU segments (codegen/vta/target.py)."""
    from .codegen.vta.target import compile_vta

    graph = optimized_graph(model, input_shapes, passes, progress)
    return compile_vta(graph, lambda segment: compile_graph(segment, cpu, options), progress=progress)


def compile_graph(graph, cpu, options=None, progress=None) -> CompiledModel:
    """A verified, optimized ir.Graph -> a CompiledModel for `cpu` (a CpuTarget, or a CudaTarget:
    lower every node with that target's rules, build)."""
    from .codegen.cpu import build, lower

    lowered = lower(graph, cpu, progress, options)
    ex = build(lowered, cpu, progress)
    spec = lambda vs: [(n, t.shape, t.dtype) for n, t in vs]  # noqa: E731
    return CompiledModel(ex, lowered.params, spec(lowered.inputs), spec(lowered.outputs),
                         cpu.to_json(), executable=ex, report=[asdict(n) for n in lowered.nodes])
