"""Every light-zoo model compiles for CUDA (sm_90) and nvcc turns its kernels into a cubin.

No GPU is needed: the numbers of each GPU schedule are checked in test_cuda_schedules.py;
this checks that whole models lower (every op has a CUDA rule) and that nvcc accepts
all generated code. nvcc runs in a thread while the next model compiles.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import nnforge
from nnforge.codegen.cuda import CudaTarget
from nnforge.codegen.cuda.nvcc import compile_cuda, cuda_source
from nnforge.models import light_zoo


@pytest.mark.slow
def test_light_zoo_cuda_codegen_and_nvcc():
    target = CudaTarget()
    t0 = time.time()
    with ThreadPoolExecutor(1) as pool:
        jobs = {}
        for name in light_zoo.NAMES:
            cm = nnforge.compile(light_zoo.load(name), target="cuda", cache=False)
            assert all(k["rule"].startswith("gpu-") for k in cm.report), name
            source = cuda_source(cm.executable)
            jobs[name] = (source.count("__global__"), pool.submit(compile_cuda, source, target, "cubin"))
        for name, (kernels, job) in jobs.items():
            cubin = job.result()
            assert kernels > 0 and cubin[:4] == b"\x7fELF", name  # a cubin is an ELF image
    print(f"\nlight zoo: CUDA codegen + nvcc for {len(jobs)} models in {time.time() - t0:.0f}s")
