"""CUDA C from a built module, and nvcc on it (no GPU needed).

`tvm.compile` for cuda stores the kernels as CUDA C source in the executable; TVM turns
it into a cubin when the artifact is loaded on the GPU machine. Compiling it here with
nvcc checks, at compile time, that every kernel is valid CUDA for the target's arch.
"""
from __future__ import annotations

import shutil

from ...errors import CompileError
from .target import CudaTarget


def cuda_source(executable) -> str:
    """The CUDA C source of every kernel in `executable` (a tvm Executable built for cuda)."""
    pending = [executable.mod]
    while pending:
        module = pending.pop()
        if module.kind == "cuda":
            return module.inspect_source()
        pending.extend(module.imports)
    raise CompileError("the executable has no CUDA module (was it built for the cuda target?)")


def compile_cuda(source: str, target: CudaTarget, fmt: str = "cubin") -> bytes:
    """Compile CUDA C `source` for `target.arch` with nvcc.

    Args:
        source: CUDA C (see `cuda_source`).
        target: the CudaTarget.
        fmt: "cubin", "ptx" or "fatbin".
    Returns:
        the binary (PTX text as bytes).
    Raises:
        CompileError: no nvcc on PATH, or nvcc rejected the code (its message included).
    """
    import tvm
    from tvm.support import nvcc

    if shutil.which("nvcc") is None:
        raise CompileError("nvcc (the CUDA toolkit) is not on PATH; it is needed to compile CUDA code here")
    try:
        with tvm.target.Target({"kind": "cuda", "arch": target.arch}):  # compile_cuda reads the current target
            return bytes(nvcc.compile_cuda(source, target_format=fmt, arch=target.arch, compiler="nvcc"))
    except Exception as e:  # nvcc's own diagnostics are the useful part
        raise CompileError(f"nvcc failed for {target.arch}: {str(e).strip()[-2000:]}") from e
