"""The VTA target: which nodes VTA takes (power-of-two QConv/QMatMul) and why others stay on the CPU,
models split into VTA layers and CPU segments bit-exact against the reference interpreter,
export/load needing only the runtime, and `nnforge compile/inspect --target vta`."""
import os
import subprocess
import sys

import numpy as np
import pytest

import nnforge
from nnforge.codegen.vta.target import lower_node, place
from nnforge.errors import UnsupportedError
from nnforge.ir import Graph, TensorType, interpret, print_graph
from nnforge.models.resnet18_int8 import resnet18_int8, sample_input


def _int8(rng, shape):
    return rng.integers(-127, 128, shape, dtype=np.int8)


def _small_graph(seed=0):
    """int8 x -> QConv (VTA) -> int32 residual add, clip, cast, flatten (CPU) -> QMatMul (VTA)."""
    rng = np.random.default_rng(seed)
    g = Graph("small_int8")
    x = g.add_input("x", TensorType("int8", (2, 20, 6, 6)))
    y, = g.add_node("QConv", [x, g.constant(_int8(rng, (24, 20, 3, 3))),
                              g.constant(rng.integers(-2000, 2000, 24).astype(np.int32))],
                    {"pads": [1] * 4, "strides": [2, 2], "shift": [10], "activation": "Relu"}, "conv")
    wide, = g.add_node("Cast", [y], {"to": "int32"})
    s, = g.add_node("Add", [wide, wide])
    s, = g.add_node("Clip", [s], {"min": 0, "max": 127})
    z, = g.add_node("Cast", [s], {"to": "int8"})
    flat, = g.add_node("Reshape", [z], {"shape": [2, 24 * 9]})
    m, = g.add_node("QMatMul", [flat, g.constant(_int8(rng, (24 * 9, 40)))], {"shift": [12]}, "fc")
    g.set_outputs([m, y])
    return g, {"x": _int8(rng, (2, 20, 6, 6))}


@pytest.fixture(scope="module")
def small():
    g, feeds = _small_graph()
    return g, feeds, nnforge.compile(g, target="vta", cache=False)


def test_small_model_runs_vta_and_cpu_bit_exact(small):
    g, feeds, model = small
    want = interpret(g, feeds)
    got = model.run(feeds)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
        assert len(np.unique(b)) > 20  # not saturated: the comparison means something
    assert [(r["op"], r["device"]) for r in model.report if r["device"] == "vta"] == [("QConv", "vta"),
                                                                                      ("QMatMul", "vta")]
    conv = model.report[0]
    assert conv["instructions"] > 0 and conv["cycles"] > 0 and conv["bytes_moved"] > 0
    assert model.last_stats[conv["node"]].gemm_counter == conv["gemm_counter"]  # as in the report's run


def test_export_load_in_a_runtime_only_process(small, tmp_path):
    g, feeds, model = small
    path = model.export(str(tmp_path / "art"))
    np.save(tmp_path / "x.npy", feeds["x"])
    np.save(tmp_path / "want.npy", interpret(g, feeds)[0])
    script = f"""
import sys, numpy as np, nnforge
m = nnforge.load({path!r})
out = m.run({{"x": np.load({str(tmp_path / 'x.npy')!r})}})[0]
assert np.array_equal(out, np.load({str(tmp_path / 'want.npy')!r}))
bad = [n for n in sys.modules if n == "onnx" or n.startswith(("onnx.", "nnforge.frontend", "nnforge.passes",
       "nnforge.codegen", "nnforge.ir"))]
assert not bad, bad
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       env=dict(os.environ, TVM_USE_RUNTIME_LIB="1"), cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
    with open(os.path.join(path, "vta.npz"), "ab") as f:  # a damaged artifact is refused
        f.write(b"x")
    with pytest.raises(nnforge.ArtifactError, match="vta.npz does not match"):
        nnforge.load(path)


def test_feed_errors_are_clear(small):
    with pytest.raises(nnforge.InputError, match=r"input 'x': expected int8\[2, 20, 6, 6\], got float32"):
        small[2].run({"x": np.zeros((2, 20, 6, 6), np.float32)})


def _qconv_graph(attrs=None, x_dtype="int8", bias=None, k=3, residual=False):
    rng = np.random.default_rng(1)
    g = Graph()
    x = g.add_input("x", TensorType(x_dtype, (1, 32, 8, 8)))
    inputs = [x, g.constant(_int8(rng, (16, 32 // (attrs or {}).get("group", 1), k, k)))]
    inputs += [g.constant(np.asarray(bias, np.int32))] if bias is not None else []
    inputs += [g.add_input("r", TensorType("int8", (1, 16, 8, 8)))] if residual else []
    y, = g.add_node("QConv", inputs, {"pads": [1] * 4, "shift": [9], **(attrs or {})}, "layer")
    g.set_outputs([y])
    return g


@pytest.mark.parametrize("attrs, kwargs, reason", [
    ({"multiplier": [3]}, {}, "multiplier must be 1"),
    ({"shift": [16]}, {}, r"one shift in 0\.\.15 expected, got \[16\]"),
    ({"shift": [8] * 15 + [9]}, {}, r"one shift in 0\.\.15 expected, got \[8, 9\]"),
    ({"x_zero_point": 3}, {}, "zero points must be 0, got x 3, out 0"),
    ({"out_dtype": "uint8"}, {}, "int8 in/out expected, got int8 -> uint8"),
    ({}, {"x_dtype": "uint8"}, "int8 in/out expected, got uint8 -> int8"),
    ({"group": 2}, {}, r"group 2 \(only 1\)"),
    ({"dilations": [2, 2]}, {}, r"dilations \[2, 2\]"),
    ({"pads": [1, 1, 0, 0]}, {}, r"asymmetric pads \[1, 1, 0, 0\]"),
    ({}, {"bias": [2**31 - 1] + [0] * 15}, "int32 sums may wrap"),
    ({}, {"bias": [0] * 16, "residual": True}, r"residual input \(VTA has no residual add\)"),
])
def test_nodes_vta_cannot_run_stay_on_the_cpu_with_the_reason(attrs, kwargs, reason):
    g = _qconv_graph(attrs, **kwargs)
    (p,) = place(g)
    assert p.device == "cpu" and p.layer is None
    with pytest.raises(UnsupportedError, match=rf"node layer_\d+ \(QConv\): .*{reason}"):
        lower_node(g.nodes[0])


def test_accepted_node_matches_the_interpreter():
    g = _qconv_graph({"activation": "Relu"}, bias=np.arange(16) * 50)
    (p,) = place(g)
    x = _int8(np.random.default_rng(2), (1, 32, 8, 8))
    got, _ = p.layer.run(x)
    np.testing.assert_array_equal(got, interpret(g, {"x": x})[0])


@pytest.fixture(scope="module")
def resnet():
    graph = resnet18_int8((1, 3, 32, 32), seed=3)
    x = sample_input((1, 3, 32, 32), np.random.default_rng(4))
    return graph, {"input": x}, nnforge.compile(graph, target="vta", cache=False)


def test_resnet18_int8_runs_all_int8_convs_on_vta_bit_exact(resnet):
    graph, feeds, model = resnet
    qconvs = [n.name for n in graph.nodes if n.op == "QConv"]
    on_vta = [r["node"] for r in model.report if r["device"] == "vta"]
    assert len(qconvs) == 19 and on_vta == qconvs  # the float stem conv stays on the CPU
    features, logits = model.run(feeds)
    want_features, want_logits = interpret(graph, feeds)
    np.testing.assert_array_equal(features, want_features)
    assert len(np.unique(want_features)) > 30
    np.testing.assert_allclose(logits, want_logits, rtol=1e-4, atol=1e-5)
    assert set(model.last_stats) == set(qconvs)


def test_resnet18_int8_vta_equals_the_cpu_int8_path(resnet):
    graph, feeds, model = resnet
    cpu = nnforge.compile(graph, target="cpu", cache=False)
    np.testing.assert_array_equal(model.run(feeds)[0], cpu.run(feeds)[0])


def test_cli_inspect_and_compile_for_vta(tmp_path):
    g, feeds = _small_graph(seed=5)
    model_file = tmp_path / "small.nnir"
    model_file.write_text(print_graph(g, max_const_elems=None))
    def run(*args):
        return subprocess.run([sys.executable, "-m", "nnforge.cli", *args], capture_output=True, text=True)
    r = run("inspect", "--target", "vta", "--max-const", "0", str(model_file))
    assert r.returncode == 0, r.stderr
    assert "# 2 layers on VTA, 5 nodes on the CPU" in r.stdout
    assert [line.split()[1:3] for line in r.stdout.splitlines() if " vta " in line] == [["QConv", "vta"],
                                                                                       ["QMatMul", "vta"]]
    out = tmp_path / "art"
    r = run("compile", "--target", "vta", str(model_file), "-o", str(out))
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(nnforge.load(str(out)).run(feeds)[0], interpret(g, feeds)[0])
