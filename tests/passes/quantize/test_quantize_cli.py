"""`nnforge compile --quantize int8 --calib DIR` and the "quantize:..." pass spec."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import nnforge
from nnforge.cli import main
from nnforge.errors import NnforgeError
from nnforge.frontend import import_model
from nnforge.ir import interpret
from nnforge.passes import DEFAULT_PIPELINE, get_pass, run_pipeline


def _conv_model():
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 4, 3, 3)).astype(np.float32) * 0.3, "w"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 4, 4])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


@pytest.fixture
def calib_dir(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(3):
        np.savez(tmp_path / f"feed{i}.npz", x=rng.standard_normal((1, 4, 8, 8)).astype(np.float32))
    return tmp_path


def test_quantize_pass_spec(calib_dir):
    p = get_pass(f"quantize:int8,calib={calib_dir},calibrator=minmax,power-of-two")
    g = run_pipeline(import_model(_conv_model()))
    q = p(g)
    assert q.op_histogram()["QConv"] == 1 and all(n.attrs["multiplier"] == (1,) for n in q.nodes if n.op == "QConv")
    x = {"x": np.random.default_rng(2).standard_normal((1, 4, 8, 8)).astype(np.float32)}
    a, b = interpret(g, x)[0].ravel(), interpret(q, x)[0].ravel()
    assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.99
    for bad, match in (("quantize:int4,calib=d", "expected quantize:int8"), ("quantize:int8", "expected"),
                       ("quantize:int8,calib=d,calibrator=mse", "unknown calibrator"),
                       ("quantize:int8,calib=d,colour=red", "unknown option")):
        with pytest.raises(NnforgeError, match=match):
            get_pass(bad)


def test_compiled_int8_model_equals_the_interpreter(calib_dir, tmp_path):
    """The CLI path end to end; the int8 kernels (codegen/int8.py) are bit-exact to the IR."""
    model_path = tmp_path / "conv.onnx"
    onnx.save(_conv_model(), str(model_path))
    out = tmp_path / "art"
    assert main(["compile", str(model_path), "-o", str(out), "--quantize", "int8", "--calib", str(calib_dir),
                 "--calibrator", "percentile"]) == 0
    compiled = nnforge.load(str(out))
    spec = f"quantize:int8,calib={calib_dir},calibrator=percentile"
    q = run_pipeline(import_model(_conv_model()), [*DEFAULT_PIPELINE, spec])
    assert "QConv" in q.op_histogram()
    x = {"x": np.random.default_rng(3).standard_normal((1, 4, 8, 8)).astype(np.float32)}
    np.testing.assert_array_equal(compiled.run(x)[0], interpret(q, x)[0])


def test_cli_quantize_needs_calib(tmp_path):
    model_path = tmp_path / "conv.onnx"
    onnx.save(_conv_model(), str(model_path))
    with pytest.raises(SystemExit, match="--calib DIR"):
        main(["compile", str(model_path), "-o", str(tmp_path / "a"), "--quantize", "int8"])
    with pytest.raises(SystemExit, match="need --quantize int8"):
        main(["compile", str(model_path), "-o", str(tmp_path / "a"), "--calib", str(tmp_path)])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["compile", str(model_path), "-o", str(tmp_path / "a"), "--quantize", "int8",
                 "--calib", str(empty)]) == 2  # a clean nnforge error, printed


def test_compiles_with_calibration_data_are_not_cached_by_pass_name(calib_dir):
    """The calibration directory's files can change under the same "quantize:...,calib=DIR" name."""
    from nnforge.driver import cacheable
    from nnforge.passes.quantize import quantize_pass, quantize_spec

    assert cacheable([*DEFAULT_PIPELINE, "prune:magnitude:0.5"])
    assert not cacheable([*DEFAULT_PIPELINE, quantize_spec(str(calib_dir))])
    assert not cacheable([*DEFAULT_PIPELINE, quantize_pass(str(calib_dir))])
