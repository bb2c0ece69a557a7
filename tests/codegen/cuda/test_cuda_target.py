"""The cuda target end to end: parsing, compiling a model, nvcc, export, and loading
an artifact on a machine without a GPU (a clear nnforge error)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import nnforge
from nnforge.cli import main as cli_main
from nnforge.codegen.cuda import CudaTarget, parse_target
from nnforge.codegen.cuda.nvcc import compile_cuda, cuda_source
from nnforge.errors import ArtifactError, UnsupportedError


def _has_gpu() -> bool:
    import tvm.runtime

    return tvm.runtime.enabled("cuda") and tvm.runtime.cuda(0).exist


def test_parse_target_forms_and_errors():
    assert parse_target("cuda") == CudaTarget("sm_90")
    assert parse_target('{"kind": "cuda", "arch": "sm_80"}').arch == "sm_80"
    assert parse_target({"kind": "cuda", "max_shared_memory_per_block": 1024}).max_shared_memory_per_block == 1024
    assert parse_target("cuda").tvm_target().attrs["arch"] == "sm_90"
    with pytest.raises(UnsupportedError, match="unknown field"):
        parse_target({"kind": "cuda", "cores": 3})
    with pytest.raises(UnsupportedError, match="arch must look like"):
        parse_target({"kind": "cuda", "arch": "ampere"})
    with pytest.raises(UnsupportedError, match="unknown target 'rocm'"):
        nnforge.compile(b"", target="rocm")


@pytest.fixture(scope="module")
def cuda_model(small_resnet):
    return nnforge.compile(small_resnet, target={"kind": "cuda", "arch": "sm_90"}, cache=False)


def test_model_compiles_with_nvcc(cuda_model):
    rules = {k["rule"] for k in cuda_model.report}
    assert {"gpu-conv2d-implicit-gemm", "gpu-gemv"} <= rules
    source = cuda_source(cuda_model.executable)
    assert source.count("__global__") >= len(cuda_model.report)
    for fmt in ("cubin", "ptx"):
        assert len(compile_cuda(source, CudaTarget(), fmt)) > 1000


def test_nvcc_error_is_a_compile_error():
    with pytest.raises(nnforge.CompileError, match="nvcc failed for sm_90"):
        compile_cuda('extern "C" __global__ void k() { undefined_name(); }', CudaTarget())


def test_export_and_load_without_gpu(cuda_model, tmp_path):
    if _has_gpu():
        pytest.skip("this machine has a GPU")
    path = cuda_model.export(str(tmp_path / "art"))
    manifest = json.load(open(os.path.join(path, "manifest.json")))
    assert manifest["target"]["kind"] == "cuda" and manifest["target"]["arch"] == "sm_90"
    with pytest.raises(ArtifactError, match="compiled for CUDA .*needs an NVIDIA GPU"):
        nnforge.load(path)
    with pytest.raises(ArtifactError, match="needs an NVIDIA GPU"):
        cuda_model.run({n: np.zeros(s, d) for n, s, d in cuda_model.inputs})


def test_cli_compile_target_cuda(small_resnet, tmp_path, capsys):
    import onnx

    model = tmp_path / "m.onnx"
    onnx.save(small_resnet, str(model))
    out = tmp_path / "art"
    assert cli_main(["compile", str(model), "-o", str(out), "--target", "cuda", "--no-cache"]) == 0
    assert json.load(open(out / "manifest.json"))["target"]["kind"] == "cuda"
    assert cli_main(["compile", str(model), "-o", str(out), "--target", '{"kind":"cuda","arch":"gpu"}']) == 2
    assert "arch must look like" in capsys.readouterr().err


@pytest.mark.gpu
def test_cuda_matches_cpu_on_gpu(cuda_model, small_resnet):
    if not _has_gpu():
        pytest.skip("no CUDA GPU here")
    feeds = {n: np.random.default_rng(0).standard_normal(s).astype(d) for n, s, d in cuda_model.inputs}
    cpu = nnforge.compile(small_resnet, cache=False)
    for got, want in zip(cuda_model.run(feeds), cpu.run(feeds)):
        assert np.abs(got - want).max() <= 1e-4 * max(np.abs(want).max(), 1e-30)


def test_winograd_is_opt_in_and_compiles_with_nvcc(small_resnet):
    cm = nnforge.compile(small_resnet, target="cuda", schedule="winograd=on", cache=False)
    rules = [k["rule"] for k in cm.report if k["op"] == "Conv"]
    assert any(r.startswith("gpu-conv2d-winograd") for r in rules), rules
    assert compile_cuda(cuda_source(cm.executable), CudaTarget(), "cubin")[:4] == b"\x7fELF"
