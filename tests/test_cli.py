"""The `nnforge` command: compile -> run -> inspect -> bench, and errors as clean messages."""
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest

from nnforge.bench import ort_session
from tests.conftest import rel_err


def nnforge_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "nnforge.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def model_path(small_resnet, tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "resnet.onnx"
    onnx.save(small_resnet, str(path))
    return str(path)


def test_compile_run_roundtrip(model_path, small_resnet, tmp_path):
    out_dir = str(tmp_path / "art")
    r = nnforge_cli("compile", model_path, "-o", out_dir, "--shape", "input=1,3,64,64")
    assert r.returncode == 0, r.stderr
    assert "[nnforge] lowered" in r.stderr  # progress is shown
    x = np.random.default_rng(3).standard_normal((1, 3, 64, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = nnforge_cli("run", out_dir, "--input", f"input={tmp_path / 'x.npy'}", "-o", str(tmp_path / "y.npz"))
    assert r.returncode == 0, r.stderr
    got = np.load(tmp_path / "y.npz")["logits"]
    assert rel_err(got, ort_session(small_resnet).run(None, {"input": x})[0]) <= 1e-4


def test_inspect_prints_ir_histogram_and_flops(model_path):
    r = nnforge_cli("inspect", model_path)
    assert r.returncode == 0, r.stderr
    assert "graph " in r.stdout and "= Conv(" in r.stdout
    assert "GFLOPs" in r.stdout and "op histogram: Conv 20" in r.stdout.replace(",", "")


def test_bench_prints_side_by_side(model_path):
    r = nnforge_cli("bench", model_path, "--rounds", "3")
    assert r.returncode == 0, r.stderr
    assert "nnforge" in r.stdout and "ort" in r.stdout and "tvm (stock)" in r.stdout
    assert "ratio nnforge/ORT" in r.stdout


def test_errors_are_messages_not_tracebacks(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    r = nnforge_cli("compile", str(bad), "-o", str(tmp_path / "o"))
    assert r.returncode == 2
    assert r.stderr.startswith("nnforge: error:") and "Traceback" not in r.stderr
    r = nnforge_cli("run", str(tmp_path))
    assert r.returncode == 2 and "not an nnforge artifact" in r.stderr
