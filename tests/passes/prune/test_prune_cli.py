"""`nnforge compile --prune SPEC` and `nnforge inspect --prune SPEC --schedules`."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import nnforge
from nnforge.cli import main
from nnforge.driver import import_graph
from nnforge.ir import interpret
from nnforge.passes import DEFAULT_PIPELINE, run_pipeline


def mlp_model(path):
    """x[4, 64] -> Gemm(256) -> Relu -> Gemm(32), He-initialized."""
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((256, 64)) * np.sqrt(2 / 64)).astype(np.float32)
    w2 = (rng.standard_normal((32, 256)) * np.sqrt(2 / 256)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (4, 64))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, (4, 32))],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    return path


def test_compile_with_prune_matches_the_pruned_graph(tmp_path, capsys):
    model = mlp_model(str(tmp_path / "mlp.onnx"))
    assert main(["compile", model, "-o", str(tmp_path / "out"), "--prune", "block:16x1:0.9", "--no-cache"]) == 0
    x = np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32)
    (got,) = nnforge.load(str(tmp_path / "out")).run({"x": x})
    pruned = run_pipeline(import_graph(model), ["prune:block:16x1:0.9", *DEFAULT_PIPELINE])
    (want,) = interpret(pruned, {"x": x})
    (dense,) = interpret(import_graph(model), {"x": x})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    assert np.abs(dense - want).max() > 1e-2  # the pruning did happen


def test_inspect_shows_the_sparse_choice(tmp_path, capsys):
    model = mlp_model(str(tmp_path / "mlp.onnx"))
    assert main(["inspect", model, "--prune", "block:16x1:0.9", "--schedules"]) == 0
    out = capsys.readouterr().out
    assert "bsr-dense" in out and "BSR 16x1 blocks" in out


def test_bad_prune_spec_is_a_clear_error(tmp_path, capsys):
    model = mlp_model(str(tmp_path / "mlp.onnx"))
    assert main(["compile", model, "-o", str(tmp_path / "out"), "--prune", "block:4x:0.9", "--no-cache"]) == 2
    assert "ROWSxCOLS" in capsys.readouterr().err
