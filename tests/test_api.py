"""The public API end to end: compile, run vs ONNX Runtime, export/load, feed errors, artifacts."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import nnforge
from nnforge.bench import ort_session
from tests.conftest import rel_err


@pytest.fixture(scope="module")
def compiled(small_resnet):
    return nnforge.compile(small_resnet, input_shapes=None)


@pytest.fixture(scope="module")
def feed():
    return {"input": np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)}


def test_run_matches_onnxruntime(small_resnet, compiled, feed):
    ref = ort_session(small_resnet).run(None, feed)[0]
    out = compiled.run(feed)
    assert len(out) == 1 and out[0].shape == (1, 10)
    assert rel_err(out[0], ref) <= 1e-4


def test_interpreter_matches_onnxruntime(small_resnet, feed):
    from nnforge.driver import import_graph
    from nnforge.ir import interpret

    ref = ort_session(small_resnet).run(None, feed)[0]
    assert rel_err(interpret(import_graph(small_resnet), feed)[0], ref) <= 1e-4


def test_export_and_load_roundtrip(compiled, feed, tmp_path):
    path = compiled.export(str(tmp_path / "model"))
    assert sorted(os.listdir(path)) == ["manifest.json", "model.so", "params.npz"]
    manifest = json.load(open(os.path.join(path, "manifest.json")))
    assert manifest["nnforge_version"] == nnforge.__version__
    assert manifest["target"]["kind"] == "llvm"
    assert manifest["inputs"] == [{"name": "input", "shape": [1, 3, 64, 64], "dtype": "float32"}]
    loaded = nnforge.load(path)
    np.testing.assert_array_equal(loaded.run(feed)[0], compiled.run(feed)[0])


def test_fresh_process_needs_only_tvm_runtime_and_numpy(compiled, feed, tmp_path):
    path = compiled.export(str(tmp_path / "model"))
    np.save(tmp_path / "x.npy", feed["input"])
    np.save(tmp_path / "want.npy", compiled.run(feed)[0])
    script = f"""
import sys, numpy as np
import nnforge
m = nnforge.load({path!r})
out = m.run({{"input": np.load({str(tmp_path / 'x.npy')!r})}})[0]
assert np.array_equal(out, np.load({str(tmp_path / 'want.npy')!r}))
bad = [n for n in sys.modules if n == "onnx" or n.startswith(("onnx.", "onnxruntime", "nnforge.frontend",
       "nnforge.passes", "nnforge.codegen", "nnforge.ir"))]
assert not bad, bad
import tvm
assert tvm.base._RUNTIME_ONLY
print("ok")
"""
    env = dict(os.environ, TVM_USE_RUNTIME_LIB="1")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr


@pytest.mark.parametrize("feeds, message", [
    ({}, "missing input 'input'"),
    ({"input": np.zeros((1, 3, 64, 64), np.float32), "other": np.zeros(1)}, "unknown input"),
    ({"input": np.zeros((1, 3, 32, 32), np.float32)}, "expected float32[1, 3, 64, 64], got float32[1, 3, 32, 32]"),
    ({"input": np.zeros((1, 3, 64, 64), np.float64)}, "expected float32[1, 3, 64, 64], got float64"),
])
def test_feed_errors_are_clear(compiled, feeds, message):
    with pytest.raises(nnforge.InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        compiled.run(feeds)


def test_load_refuses_tampered_or_foreign_artifacts(compiled, tmp_path):
    path = compiled.export(str(tmp_path / "model"))
    with open(os.path.join(path, "params.npz"), "ab") as f:
        f.write(b"x")
    with pytest.raises(nnforge.ArtifactError, match="params.npz does not match"):
        nnforge.load(path)
    path = compiled.export(str(tmp_path / "model2"))
    mpath = os.path.join(path, "manifest.json")
    manifest = json.load(open(mpath))
    manifest["nnforge_version"] = "0.0.1"
    json.dump(manifest, open(mpath, "w"))
    with pytest.raises(nnforge.ArtifactError, match="written by nnforge 0.0.1"):
        nnforge.load(path)
    with pytest.raises(nnforge.ArtifactError, match="not an nnforge artifact"):
        nnforge.load(str(tmp_path))


def test_unknown_schedule_family_is_clear(small_resnet):
    with pytest.raises(nnforge.NnforgeError, match="unknown schedule family winogard"):
        nnforge.compile(small_resnet, schedule="winogard=off", cache=False)


def test_unknown_target_is_clear(small_resnet):
    with pytest.raises(nnforge.UnsupportedError, match="unknown target 'tpu'"):
        nnforge.compile(small_resnet, target="tpu")


def test_compile_cache_reuses_artifact(small_resnet, feed, tmp_path, monkeypatch):
    monkeypatch.setenv("NNFORGE_CACHE_DIR", str(tmp_path / "cache"))
    msgs = []
    first = nnforge.compile(small_resnet, progress=msgs.append)
    assert not any("compile cache" in m for m in msgs)
    second = nnforge.compile(small_resnet, progress=msgs.append)
    assert any("loaded from the compile cache" in m for m in msgs)
    np.testing.assert_array_equal(second.run(feed)[0], first.run(feed)[0])
    assert [k["rule"] for k in second.report] == [k["rule"] for k in first.report]
    # a cached model exports like a fresh one, and other options miss the cache
    path = second.export(str(tmp_path / "exported"))
    np.testing.assert_array_equal(nnforge.load(path).run(feed)[0], first.run(feed)[0])
    msgs.clear()
    from nnforge.codegen.rules import RULES

    nnforge.compile(small_resnet, schedule=f"{RULES['Conv'][0].family}=on", progress=msgs.append)
    assert not any("compile cache" in m for m in msgs)
    nnforge.compile(small_resnet, cache=False, progress=msgs.append)
    assert not any("compile cache" in m for m in msgs)
