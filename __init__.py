"""nnforge: ONNX -> nnforge IR -> verified passes -> TVM -> deployable module.

    import nnforge
    cm = nnforge.compile("model.onnx", target="cpu", input_shapes={"x": (1, 3, 224, 224)})
    outs = cm.run({"x": x})
    cm.export("build/model")
    m = nnforge.load("build/model")   # needs tvm.runtime and numpy only

Importing nnforge is cheap: the compiler (onnx, frontend, passes, codegen) is
imported only when `compile` is called.
"""
import os as _os

# TVM sizes its thread pool once, at first use, and defaults to half the cores on x86.
_os.environ.setdefault("TVM_NUM_THREADS", str(len(_os.sched_getaffinity(0))
                                              if hasattr(_os, "sched_getaffinity") else _os.cpu_count()))

__version__ = "0.1.0"

from .errors import (ArtifactError, CompileError, InputError, ModelError, NnforgeError,  # noqa: E402
                     ShapeError, UnsupportedError)
from .runtime import CompiledModel, load  # noqa: E402

__all__ = ["compile", "optimize", "load", "CompiledModel", "NnforgeError", "ModelError", "UnsupportedError",
           "ShapeError", "InputError", "CompileError", "ArtifactError", "__version__"]


def compile(model, target: str = "cpu", input_shapes: dict | None = None, passes=None,
            schedule=None, progress=None, cache: bool = True) -> CompiledModel:
    """Compile an ONNX model for a target.

    Args:
        model: path to a .onnx file, its bytes, an onnx.ModelProto, or an nnforge ir.Graph.
        target: "cpu" (the host CPU, all cores), "vta" (VTA layers on the simulator, the rest on
            the CPU), or "cuda" / a CUDA target dict or JSON string (default arch sm_90).
        input_shapes: fixes symbolic input dims, e.g. {"x": (1, 3, 224, 224)}.
        passes: list of pass names to run (default: passes.DEFAULT_PIPELINE).
        schedule: schedule overrides, e.g. "winograd=off,strassen=on", or a
            codegen.rules.ScheduleOptions (also: measure candidates on this machine).
        progress: optional callable receiving status strings during long compiles.
        cache: reuse (and fill) the compile cache in $NNFORGE_CACHE_DIR (default
            ~/.cache/nnforge), keyed by the model bytes and every option above.
    Returns:
        a CompiledModel (`run`, `export`).
    """
    from .driver import compile_model

    return compile_model(model, target, input_shapes, passes, schedule, progress, cache)


def optimize(model, rules=None, disable=(), engine: str = "taso", time_limit: float = 20.0):
    """Rewrite an ONNX model with verified TASO-style rules; ONNX in, ONNX out.

    Args:
        model: an onnx.ModelProto, a path to a .onnx file, or its bytes.
        rules: rule names to use (default: all; `nnforge rules list`).
        disable: rule names to leave out.
        engine: "taso" (backtracking search) or "egraph" (equality saturation).
        time_limit: search budget in seconds.
    Returns:
        an onnx.ModelProto (opset 17) computing the same outputs, validated against the
        input with the reference interpreter.
    """
    from .passes.rewrite import optimize_model

    return optimize_model(model, rules, disable, engine=engine, time_limit=time_limit)[0]
