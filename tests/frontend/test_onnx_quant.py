"""Quantized ONNX models: QLinearConv / QLinearMatMul / ConvInteger / MatMulInteger and QDQ
imported and interpreted against ONNX Runtime."""
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import nnforge
from nnforge.errors import UnsupportedError
from nnforge.frontend import import_model
from nnforge.ir import interpret

RNG = np.random.default_rng(0)
_DTYPES = {np.dtype("uint8"): TensorProto.UINT8, np.dtype("int8"): TensorProto.INT8,
           np.dtype("int32"): TensorProto.INT32, np.dtype("float32"): TensorProto.FLOAT}


def _model(node, feeds: dict, out_dtype, out_shape, inits: dict):
    graph = helper.make_graph(
        [node], "q", [helper.make_tensor_value_info(k, _DTYPES[v.dtype], v.shape) for k, v in feeds.items()],
        [helper.make_tensor_value_info("y", _DTYPES[np.dtype(out_dtype)], out_shape)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _both(model, feeds):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return interpret(import_model(model), feeds)[0], session.run(None, feeds)[0]


def _lsb_diff(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    return int(np.abs(got.astype(np.int64) - want.astype(np.int64)).max())


@pytest.mark.parametrize("group,per_channel,dtype", [(1, True, "uint8"), (1, False, "uint8"), (4, True, "uint8"),
                                                     (1, True, "int8")])
def test_qlinear_conv_matches_ort_to_one_lsb(group, per_channel, dtype):
    info = np.iinfo(dtype)
    x = RNG.integers(info.min, info.max + 1, (1, 8, 9, 9)).astype(dtype)
    w = RNG.integers(-127, 128, (16, 8 // group, 3, 3), dtype=np.int8)
    inits = {"xs": np.float32(0.02), "xz": np.array(info.min + 120, dtype),
             "w": w, "ws": (RNG.uniform(0.005, 0.02, 16) if per_channel else np.array(0.01)).astype(np.float32),
             "wz": np.zeros(16 if per_channel else (), np.int8), "ys": np.float32(0.15),
             "yz": np.array(info.min + 100, dtype), "b": RNG.integers(-2000, 2000, 16).astype(np.int32)}
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                            pads=[1, 1, 1, 1], strides=[2, 1], group=group)
    got, want = _both(_model(node, {"x": x}, dtype, [1, 16, 5, 9], inits), {"x": x})
    assert _lsb_diff(got, want) <= 1
    assert np.mean(got != want) < 0.02  # differences only at rounding ties


def test_qlinear_matmul_matches_ort_to_one_lsb():
    a = RNG.integers(0, 256, (6, 64), dtype=np.uint8)
    inits = {"as": np.float32(0.03), "az": np.uint8(128), "b": RNG.integers(-127, 128, (64, 32), dtype=np.int8),
             "bs": np.float32(0.004), "bz": np.int8(0), "ys": np.float32(0.1), "yz": np.uint8(97)}
    node = helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])
    got, want = _both(_model(node, {"a": a}, "uint8", [6, 32], inits), {"a": a})
    assert _lsb_diff(got, want) <= 1


def test_conv_integer_and_matmul_integer_are_exact():
    x = RNG.integers(0, 256, (1, 3, 7, 7), dtype=np.uint8)
    inits = {"w": RNG.integers(0, 256, (4, 3, 3, 3), dtype=np.uint8), "xz": np.uint8(17), "wz": np.uint8(128)}
    node = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], pads=[1, 1, 1, 1])
    got, want = _both(_model(node, {"x": x}, "int32", [1, 4, 7, 7], inits), {"x": x})
    np.testing.assert_array_equal(got, want)
    a = RNG.integers(0, 256, (5, 16), dtype=np.uint8)
    inits = {"b": RNG.integers(-128, 128, (16, 8), dtype=np.int8), "az": np.uint8(200),
             "bz": RNG.integers(-5, 5, 8, dtype=np.int8)}
    node = helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])
    got, want = _both(_model(node, {"a": a}, "int32", [5, 8], inits), {"a": a})
    np.testing.assert_array_equal(got, want)


def test_matmul_integer_per_row_zero_point():
    """ONNX allows a 1-D a_zero_point (one per row of a); ORT does not, so numpy is the oracle."""
    a = RNG.integers(0, 256, (3, 4, 6), dtype=np.uint8)
    inits = {"b": RNG.integers(-128, 128, (6, 5), dtype=np.int8), "az": RNG.integers(0, 256, 4, dtype=np.uint8)}
    node = helper.make_node("MatMulInteger", ["a", "b", "az"], ["y"])
    got = interpret(import_model(_model(node, {"a": a}, "int32", [3, 4, 5], inits)), {"a": a})[0]
    want = (a.astype(np.int64) - inits["az"].astype(np.int64)[:, None]) @ inits["b"].astype(np.int64)
    np.testing.assert_array_equal(got, want)


def test_qlinear_conv_weights_that_do_not_fit_int8_are_refused():
    inits = {"xs": np.float32(1), "xz": np.uint8(0), "w": np.full((2, 1, 1, 1), 250, np.uint8),
             "ws": np.float32(1), "wz": np.uint8(0), "ys": np.float32(1), "yz": np.uint8(0)}
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], name="qc")
    x = np.zeros((1, 1, 2, 2), np.uint8)
    with pytest.raises(UnsupportedError, match="qc.*QLinearConv.*do not fit int8"):
        import_model(_model(node, {"x": x}, "uint8", [1, 2, 2, 2], inits))


@pytest.fixture(scope="module")
def qdq_resnet(tmp_path_factory):
    """A small ResNet quantized by onnxruntime.quantization.quantize_static (QDQ, per channel)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from nnforge.models.builders import resnet

    float_model = resnet(18, num_classes=10, image=32, width=8, seed=4)
    d = tmp_path_factory.mktemp("qdq")
    (d / "f.onnx").write_bytes(float_model.SerializeToString())
    feeds = iter([{"input": RNG.standard_normal((1, 3, 32, 32)).astype(np.float32)} for _ in range(4)])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(feeds, None)

    quantize_static(str(d / "f.onnx"), str(d / "q.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True)
    import onnx
    return float_model, onnx.load(str(d / "q.onnx"))


def test_qdq_model_from_onnxruntime_imports_and_matches(qdq_resnet):
    float_model, qdq = qdq_resnet
    g = import_model(qdq)
    hist = g.op_histogram()
    assert hist.get("QuantizeLinear", 0) > 10 and hist.get("DequantizeLinear", 0) > 10
    x = {"input": RNG.standard_normal((1, 3, 32, 32)).astype(np.float32)}
    got = interpret(g, x)[0]
    want = ort.InferenceSession(qdq.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0]
    fp32 = interpret(import_model(float_model), x)[0]
    cos = float(np.dot(got.ravel(), fp32.ravel()) / np.linalg.norm(got) / np.linalg.norm(fp32))
    assert cos > 0.98  # a real int8 model of the float one
    # ORT runs integer kernels (QLinearConv) where we run the float QDQ graph: a few LSBs of the
    # output's quantization step apart at most
    out_scale = float(np.abs(want).max()) / 127
    assert np.abs(got - want).max() <= 4 * out_scale


@pytest.mark.parametrize("power_of_two", [False, True])
def test_quantized_graph_exports_to_qdq_that_onnxruntime_runs(power_of_two):
    """QConv/QMatMul -> QDQ ONNX; ORT (which fuses it back into integer layers) agrees with the
    interpreter to 1 LSB per layer. Power-of-two requantization hits exact .5 ties often (ORT
    rounds them to even, we up), and those 1-LSB differences compound over the 18 layers."""
    import onnx

    from nnforge.frontend import export_model
    from nnforge.models.mobilenet_bert import mobilenet
    from nnforge.passes import run_pipeline
    from nnforge.passes.quantize import quantize

    g = run_pipeline(import_model(mobilenet(num_classes=10, image=32, width=8, seed=5)))
    rng = np.random.default_rng(11)
    feeds = [{"input": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)} for _ in range(3)]
    q = quantize(g, feeds[:2], "minmax", power_of_two=power_of_two)
    exported = export_model(q)
    onnx.checker.check_model(exported)
    ops = {n.op_type for n in exported.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "MatMul"} <= ops and "QConv" not in ops
    session = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    out_step = float(q.outputs[0].producer.inputs[1].data)  # the final DequantizeLinear's scale
    got, want = interpret(q, feeds[2])[0], session.run(None, feeds[2])[0]
    assert np.abs(got - want).max() <= out_step * (4 if power_of_two else 1) * 1.001


def test_residual_qconv_exports_to_qdq_add_that_onnxruntime_runs():
    """A quantized ResNet whose residual Adds run inside QConvs -> QDQ ONNX with the residual as a
    DequantizeLinear + Add before the Relu and the QuantizeLinear; ORT agrees with the interpreter
    to a few output steps (1 LSB per layer, compounded along the skip path)."""
    import onnx

    from nnforge.frontend import export_model
    from nnforge.models.builders import resnet
    from nnforge.passes import run_pipeline
    from nnforge.passes.quantize import quantize

    g = run_pipeline(import_model(resnet(18, num_classes=10, image=32, width=8, seed=5)))
    rng = np.random.default_rng(12)
    feeds = [{"input": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)} for _ in range(3)]
    q = quantize(g, feeds[:2], "minmax")
    assert sum(len(n.inputs) == 4 for n in q.nodes if n.op == "QConv") == 8 and "Add" not in q.op_histogram()
    exported = export_model(q)
    onnx.checker.check_model(exported)
    adds = [n for n in exported.graph.node if n.op_type == "Add" and n.name.endswith("_residual")]
    assert len(adds) == 8
    session = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    out_step = float(q.outputs[0].producer.inputs[1].data)
    got, want = interpret(q, feeds[2])[0], session.run(None, feeds[2])[0]
    assert np.abs(got - want).max() <= 4 * out_step * 1.001
    assert np.abs(want).max() > 50 * out_step  # the outputs span many steps: the bound is not vacuous


def test_fold_qdq_turns_an_onnxruntime_qdq_model_into_integer_layers(tmp_path):
    """quantize_static's QDQ Conv/Relu/Gemm model -> QConv/QMatMul, matching ORT's outputs."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from nnforge.passes import run_pipeline

    rng = np.random.default_rng(7)
    inits = {"w1": rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "b1": np.zeros(8, np.float32) + 0.1,
             "w2": rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.15,
             "fw": rng.standard_normal((5, 8)).astype(np.float32) * 0.3, "fb": np.zeros(5, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
                              initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    (tmp_path / "f.onnx").write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                                        ir_version=9).SerializeToString())
    feeds = [{"x": rng.standard_normal((1, 3, 12, 12)).astype(np.float32)} for _ in range(5)]
    data = iter(feeds[:4])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(data, None)

    quantize_static(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True)
    qdq = (tmp_path / "q.onnx").read_bytes()
    g = run_pipeline(import_model(qdq), ["simplify", "fold-qdq"])
    hist = g.op_histogram()
    assert hist.get("QConv") == 2 and hist.get("QMatMul") == 1 and "Conv" not in hist and "Gemm" not in hist
    want = ort.InferenceSession(qdq, providers=["CPUExecutionProvider"]).run(None, feeds[4])[0]
    got = interpret(g, feeds[4])[0]
    out_step = float(g.outputs[0].producer.inputs[1].data)  # the last DequantizeLinear's scale
    assert np.abs(got - want).max() <= out_step * 1.001
    compiled = nnforge.compile(qdq)  # the default pipeline folds the QDQ patterns too
    assert any(k["op"] == "QConv" for k in compiled.report)
    np.testing.assert_array_equal(compiled.run(feeds[4])[0], got)


@pytest.mark.parametrize("power_of_two", [False, True])
def test_one_exported_layer_is_within_one_lsb(power_of_two):
    from nnforge.frontend import export_model
    from nnforge.ir import parse_graph
    from nnforge.passes.quantize import quantize

    rng = np.random.default_rng(12)
    g = parse_graph("graph c(%x: float32[1,8,10,10]) {\n  %w = const float32[16,8,3,3] <elided>\n"
                    "  %b = const float32[16] <elided>\n  %y = Conv(%x, %w, %b) {pads=[1,1,1,1], activation=\"Relu\"}\n"
                    "  return %y\n}", constants={"w": rng.standard_normal((16, 8, 3, 3)).astype(np.float32) * 0.2,
                                                 "b": rng.standard_normal(16).astype(np.float32) * 0.1})
    feeds = [{"x": rng.standard_normal((1, 8, 10, 10)).astype(np.float32)} for _ in range(4)]
    q = quantize(g, feeds[:3], "minmax", power_of_two=power_of_two)
    assert [n.op for n in q.nodes] == ["QuantizeLinear", "QConv", "DequantizeLinear"]
    session = ort.InferenceSession(export_model(q).SerializeToString(), providers=["CPUExecutionProvider"])
    step = float(q.nodes[-1].inputs[1].data)
    diff = np.abs(interpret(q, feeds[3])[0] - session.run(None, feeds[3])[0]) / step
    assert diff.max() <= 1.001
