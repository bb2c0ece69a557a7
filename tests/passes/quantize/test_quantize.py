"""The quantize pass: structure of the int8 graph, and its numbers against the float model."""
import numpy as np
import pytest

from nnforge.driver import import_graph
from nnforge.errors import InputError
from nnforge.ir import get_op, interpret, parse_graph, verify
from nnforge.ir.ops.nn import conv
from nnforge.models.builders import resnet
from nnforge.models.mobilenet_bert import mobilenet
from nnforge.passes import PassManager, run_pipeline
from nnforge.passes.quantize import quantize, quantize_pass
from nnforge.passes.quantize.qparams import quantize_weights

from ..bert_block import bert_block


def _feeds(graph, n, seed):
    rng = np.random.default_rng(seed)
    return [{v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in graph.inputs}
            for _ in range(n)]


def _cosine(a, b):
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _min_cosine(g, q, feeds_list):
    return min(_cosine(interpret(g, f)[0], interpret(q, f)[0]) for f in feeds_list)


@pytest.fixture(scope="module")
def resnet_graph():
    return run_pipeline(import_graph(resnet(18, num_classes=10, image=32, width=16, seed=1)))


@pytest.mark.parametrize("calibrator", ["minmax", "percentile", "entropy"])
def test_resnet_int8_close_to_float(resnet_graph, calibrator):
    q = quantize(resnet_graph, _feeds(resnet_graph, 3, 0), calibrator)
    verify(q)
    hist = q.op_histogram()
    assert "Conv" not in hist and "Gemm" not in hist and hist["QConv"] == 20 and hist["QMatMul"] == 1
    assert [v.name for v in q.outputs] == [v.name for v in resnet_graph.outputs]
    # consecutive layers pass uint8 tensors directly: some QConv reads another QConv
    assert any(n.op == "QConv" and n.inputs[0].producer is not None and n.inputs[0].producer.op == "QConv"
               for n in q.nodes)
    # every residual Add runs inside its QConv: int8 from the stem to the pooling head (then the classifier)
    assert "Add" not in hist and hist["QuantizeLinear"] == 2 and hist["DequantizeLinear"] == 2
    assert sum(len(n.inputs) == 4 for n in q.nodes if n.op == "QConv") == 8
    assert _min_cosine(resnet_graph, q, _feeds(resnet_graph, 3, 1)) >= 0.99


def test_power_of_two_mode_is_what_vta_needs(resnet_graph):
    q = quantize(resnet_graph, _feeds(resnet_graph, 2, 0), "minmax", power_of_two=True)
    layers = [n for n in q.nodes if n.op in ("QConv", "QMatMul")]
    assert len(layers) == 21
    for n in layers:
        assert n.attrs["multiplier"] == (1,) and len(n.attrs["shift"]) == 1
        assert n.attrs["x_zero_point"] == n.attrs["out_zero_point"] == 0 and n.attrs["out_dtype"] == "int8"
    for n in q.nodes:
        if n.op in ("QuantizeLinear", "DequantizeLinear"):
            scale = float(n.inputs[1].data)
            assert scale == 2.0 ** round(np.log2(scale)) and int(n.inputs[2].data) == 0
    assert _min_cosine(resnet_graph, q, _feeds(resnet_graph, 2, 1)) >= 0.99


def test_mobilenet_relu6_is_absorbed_into_the_int8_layers():
    g = run_pipeline(import_graph(mobilenet(num_classes=10, image=32, width=8, seed=2)))
    q = quantize(g, _feeds(g, 3, 0), "percentile")
    hist = q.op_histogram()
    assert hist["QConv"] == 17 and "Clip" not in hist and hist["QuantizeLinear"] == 2
    assert any(n.op == "QConv" and n.attrs["group"] > 1 for n in q.nodes)  # depthwise
    assert _min_cosine(g, q, _feeds(g, 3, 1)) >= 0.99


def test_bert_block_matmul_bias_folded():
    g = run_pipeline(import_graph(bert_block(seq=8, dim=16)))
    q = quantize(g, _feeds(g, 4, 0), "minmax")
    hist = q.op_histogram()
    assert hist["QMatMul"] == 4 and all(len(n.inputs) == 3 for n in q.nodes if n.op == "QMatMul")
    assert hist["MatMul"] == 2  # activation x activation products stay float
    assert _min_cosine(g, q, _feeds(g, 4, 1)) >= 0.99


_CONV = """
graph conv(%x: float32[1,4,6,6]) {
  %w = const float32[3,4,3,3] <elided>
  %b = const float32[3] [0.5, -0.25, 0.125]
  %y = Conv(%x, %w, %b) {pads=[1,1,1,1]}
  %z = MaxPool(%y) {kernel_shape=[2,2], strides=[2,2]}
  return %z
}
"""


@pytest.mark.parametrize("power_of_two", [False, True])
def test_qconv_requantization_within_one_lsb_of_float(power_of_two):
    """The integer layer equals the float conv of the dequantized operands, requantized, to 1 LSB."""
    w = np.random.default_rng(3).standard_normal((3, 4, 3, 3)).astype(np.float32)
    g = parse_graph(_CONV, constants={"w": w})
    q = quantize(g, _feeds(g, 4, 0), "minmax", power_of_two=power_of_two)
    assert [n.op for n in q.nodes] == ["QuantizeLinear", "QConv", "MaxPool", "DequantizeLinear"]
    quant, qconv, _, deq = q.nodes
    xq = get_op("QuantizeLinear").run([_feeds(g, 1, 5)[0]["x"], *(v.data for v in quant.inputs[1:])],
                                      quant.attrs)[0]
    got = get_op("QConv").run([xq, *(v.data for v in qconv.inputs[1:])], qconv.attrs)[0]
    _, w_scales = quantize_weights(w, 0, power_of_two)
    (xs, xz), (ys, yz) = ((float(n.inputs[1].data), int(n.inputs[2].data)) for n in (quant, deq))
    w_real = qconv.inputs[1].data * w_scales[:, None, None, None]
    acc = conv((xq.astype(np.float64) - xz) * xs, w_real, qconv.inputs[2].data * xs * w_scales,
               strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), group=1)
    info = np.iinfo(qconv.attrs["out_dtype"])
    want = np.clip(np.floor(acc / ys + 0.5) + yz, info.min, info.max)
    assert np.abs(got.astype(np.int64) - want).max() <= 1
    assert _min_cosine(g, q, _feeds(g, 3, 1)) >= 0.99


def test_quantize_pass_in_pass_manager_and_calibration_dir(tmp_path, resnet_graph):
    for i, f in enumerate(_feeds(resnet_graph, 2, 0)):
        np.save(tmp_path / f"{i}.npy", f["input"])
    q = PassManager([quantize_pass(str(tmp_path), "minmax")], verify=True).run(resnet_graph)
    assert "QConv" in q.op_histogram() and "QConv" not in resnet_graph.op_histogram()


def test_calibration_errors(tmp_path, resnet_graph):
    with pytest.raises(InputError, match="holds no .npy or .npz"):
        quantize(resnet_graph, str(tmp_path))
    with pytest.raises(InputError, match="does not exist"):
        quantize(resnet_graph, str(tmp_path / "missing"))
    with pytest.raises(InputError, match="at least one feed"):
        quantize(resnet_graph, [])
    with pytest.raises(InputError, match="feed 1.*unexpected \\['image'\\]"):
        quantize(resnet_graph, [{"input": np.zeros((1, 3, 32, 32), np.float32)},
                                {"image": np.zeros((1, 3, 32, 32), np.float32)}])
    np.savez(tmp_path / "a.npz", input=np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(InputError, match="a.npz.*expected float32\\[1,3,32,32\\], got float32\\[1,3,16,16\\]"):
        quantize(resnet_graph, str(tmp_path))
    two = parse_graph("graph two(%a: float32[2], %b: float32[2]) {\n  %c = Add(%a, %b)\n  return %c\n}")
    np.save(tmp_path / "b.npy", np.zeros(2, np.float32))
    with pytest.raises(InputError, match="b.npy.*one-input model"):
        quantize(two, str(tmp_path))


def test_int8_outputs_false_keeps_the_logits_layer_fp32(resnet_graph):
    q = quantize(resnet_graph, _feeds(resnet_graph, 2, 0), "minmax", int8_outputs=False)
    hist = q.op_histogram()
    assert hist["QConv"] == 20 and hist["Gemm"] == 1 and "QMatMul" not in hist
    assert q.outputs[0].producer.op == "Gemm"
    assert _min_cosine(resnet_graph, q, _feeds(resnet_graph, 2, 1)) >= 0.99


_CONCAT = """
graph inception(%x: float32[1,4,8,8]) {
  %w1 = const float32[6,4,1,1] <elided>
  %w3 = const float32[6,4,3,3] <elided>
  %w = const float32[5,12,3,3] <elided>
  %a = Conv(%x, %w1) {activation="Relu"}
  %b = Conv(%x, %w3) {pads=[1,1,1,1], activation="Relu"}
  %c = Concat(%a, %b) {axis=1}
  %p = MaxPool(%c) {kernel_shape=[2,2], strides=[2,2]}
  %y = Conv(%p, %w) {pads=[1,1,1,1]}
  return %y
}
"""


def test_concat_of_int8_layers_stays_int8():
    rng = np.random.default_rng(4)
    g = parse_graph(_CONCAT, constants={k: rng.standard_normal(s).astype(np.float32) * 0.4 for k, s in
                                        (("w1", (6, 4, 1, 1)), ("w3", (6, 4, 3, 3)), ("w", (5, 12, 3, 3)))})
    q = quantize(g, _feeds(g, 3, 0), "minmax")
    assert [n.op for n in q.nodes] == ["QuantizeLinear", "QConv", "QConv", "Concat", "MaxPool", "QConv",
                                       "DequantizeLinear"]
    assert _min_cosine(g, q, _feeds(g, 3, 1)) >= 0.99


_RESIDUAL_BLOCK = """
graph block(%x: float32[2,4,6,6]) {
  %w1 = const float32[4,4,3,3] <elided>
  %b1 = const float32[4] [0.5, -0.25, 0.125, 0.0]
  %w2 = const float32[4,4,3,3] <elided>
  %b2 = const float32[4] [0.1, 0.2, -0.3, 0.0]
  %h = Conv(%x, %w1, %b1) {pads=[1,1,1,1], activation="Relu"}
  %y = Conv(%h, %w2, %b2, %x) {pads=[1,1,1,1], activation="ACTIVATION"}
  %z = MaxPool(%y) {kernel_shape=[2,2], strides=[2,2]}
  return %z
}
"""


@pytest.mark.parametrize("activation, power_of_two, ops", [
    ("", False, ["QConv", "QConv", "MaxPool", "DequantizeLinear"]),
    ("Relu", False, ["QConv", "QConv", "MaxPool", "DequantizeLinear"]),
    ("Relu6", False, ["QConv", "QConv", "MaxPool", "DequantizeLinear"]),  # sums under 6: saturation is the clip
    ("Relu", True, ["QConv", "QConv", "DequantizeLinear", "Add", "Relu", "MaxPool"]),  # power of two: float Add
    ("HardSwish", False, ["QConv", "QConv", "DequantizeLinear", "Add", "HardSwish", "MaxPool"]),  # float epilogue
])
def test_residual_add_fused_into_qconv(activation, power_of_two, ops):
    """A Conv's fused residual whose value has an int8 twin becomes the residual input of its QConv
    (no Dequantize / Add / Quantize); the numbers stay close to the float model and to the
    float-residual form (int8_residuals=False)."""
    rng = np.random.default_rng(6)
    g = parse_graph(_RESIDUAL_BLOCK.replace("ACTIVATION", activation),
                    constants={k: rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.3 for k in ("w1", "w2")})
    calib, test = _feeds(g, 4, 0), _feeds(g, 3, 1)
    q = quantize(g, calib, "minmax", power_of_two=power_of_two)
    verify(q)
    assert [n.op for n in q.nodes] == ["QuantizeLinear", *ops]
    second = q.nodes[2]
    assert (len(second.inputs) == 4) == ("Add" not in ops)
    if len(second.inputs) == 4:
        assert second.inputs[3] is q.nodes[0].outputs[0]  # the residual is x's int8 twin
        assert second.attrs["activation"] == ("Relu" if activation else "")
    assert _min_cosine(g, q, test) >= 0.99
    float_residual = quantize(g, calib, "minmax", power_of_two=power_of_two, int8_residuals=False)
    assert "Add" in float_residual.op_histogram()
    assert min(_cosine(interpret(float_residual, f)[0], interpret(q, f)[0]) for f in test) >= 0.99

