"""The CUDA target: GPU schedules for every op, CUDA C codegen, nvcc.

Importing the package registers the CUDA rule table (registry.py) and its rules:
generic.py (any op: the CPU rule's TE compute with a one-thread-per-element
schedule), gemm.py (shared-memory tiled, register-blocked products; GEMV), conv2d.py
(implicit-GEMM and depthwise convolutions), conv2d_winograd.py (opt-in), row_reductions.py
(softmax, layernorm: cross-thread row reductions). target.py parses targets, nvcc.py compiles the CUDA C.
"""
from . import registry  # noqa: F401  (the table first: the rule modules register into it)
from . import generic, gemm, conv2d, conv2d_winograd, row_reductions  # noqa: F401,E402
from .target import CudaTarget, parse_target  # noqa: E402

__all__ = ["CudaTarget", "parse_target"]
