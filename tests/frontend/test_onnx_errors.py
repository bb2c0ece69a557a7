"""Every failure of the importer is an nnforge error that names what is wrong."""
import warnings

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from nnforge.errors import ModelError, UnsupportedError
from nnforge.frontend import import_model
from nnforge.ir import interpret
from tests.frontend.onnx_models import C, check_import, model, one_node, tensor_info

X = np.ones((1, 2, 4, 4), np.float32)


def test_every_unsupported_op_is_listed_at_once():
    nodes = [helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("TopK", ["a", "k"], ["v", "i"], name="topk"),
             helper.make_node("NonZero", ["a"], ["nz"], name="nonzero"),
             helper.make_node("FusedConv", ["a"], ["f"], name="ms_op", domain="com.microsoft")]
    proto = model(nodes, {"x": X}, ["v", "nz", "f"], {"k": np.array([1], np.int64)})
    with pytest.raises(UnsupportedError) as err:
        import_model(proto)
    listed = {(op, name) for op, _, name, _ in err.value.items}
    assert listed == {("TopK", "topk"), ("NonZero", "nonzero"), ("FusedConv", "ms_op")}
    assert "com.microsoft" in str(err.value)


def test_truncated_garbage_and_missing_files_are_model_errors(tmp_path):
    proto, _ = one_node("Relu", [X])
    data = proto.SerializeToString()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated.onnx"):
        import_model(truncated)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ModelError, match="garbage.onnx"):
        import_model(str(garbage))
    with pytest.raises(ModelError, match="missing.onnx"):
        import_model(tmp_path / "missing.onnx")
    with pytest.raises(ModelError, match="not an ONNX model"):
        import_model(b"")


def test_bytes_and_path_import_like_the_proto(tmp_path):
    proto, feeds = one_node("Relu", [X - 0.5])
    path = tmp_path / "relu.onnx"
    onnx.save(proto, path)
    for source in (path, proto.SerializeToString()):
        np.testing.assert_array_equal(interpret(import_model(source), feeds)[0], np.maximum(X - 0.5, 0))


@pytest.mark.parametrize("opset, ir_version", [(5, 10), (13, 2)])
def test_unsupported_versions(opset, ir_version):
    """Relu changed at opset 6, so an opset-5 Relu is refused, naming the op."""
    proto, _ = one_node("Relu", [X], opset=opset)
    proto.ir_version = ir_version
    with pytest.raises(ModelError, match="opset 5 is not supported for op Relu|IR version 2"):
        import_model(proto)


@pytest.mark.parametrize("op, opset, x", [("Not", 1, X > 0.5), ("Relu", 6, X - 0.5)])
def test_opset_below_7_imports_when_its_ops_did_not_change(op, opset, x):
    proto, feeds = one_node(op, [x], opset=opset)
    proto.ir_version = 3
    check_import(proto, feeds, use="ref")


def test_opset_above_21_imports_with_a_warning():
    proto, feeds = one_node("Relu", [X], opset=22)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = import_model(proto)
    assert any("opset 22" in str(w.message) for w in caught)
    np.testing.assert_array_equal(interpret(graph, feeds)[0], X)


def test_initializer_size_mismatch_names_it():
    proto, _ = one_node("Add", [X, C(np.ones(4, np.float32))])
    bad = numpy_helper.from_array(np.ones(3, np.float32), "c1")
    bad.dims[:] = [4]
    proto.graph.initializer[0].CopyFrom(bad)
    with pytest.raises(ModelError, match="'c1'.*dims"):
        import_model(proto)


def test_declared_output_shape_contradicting_inference():
    proto, _ = one_node("Relu", [X])
    proto.graph.output[0].CopyFrom(tensor_info("out0", np.float32, (1, 2, 4, 5)))
    with pytest.raises(ModelError, match="out0"):
        import_model(proto)


def test_unsupported_input_dtype():
    graph = helper.make_graph([helper.make_node("Identity", ["s"], ["t"])], "g",
                              [helper.make_tensor_value_info("s", onnx.TensorProto.STRING, [2])],
                              [helper.make_tensor_value_info("t", onnx.TensorProto.STRING, [2])])
    with pytest.raises(UnsupportedError, match="'s'.*STRING"):
        import_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))


@pytest.mark.parametrize("op, inputs, attrs, n_outputs, reason", [
    ("Resize", [X, None, C(np.array([1, 1, 2, 2], np.float32))], {"mode": "area"}, 1, "mode 'area'"),
    ("MaxPool", [X], {"kernel_shape": [2, 2]}, 2, "output 1"),
    ("Conv", [X[None], C(np.ones((2, 2, 1, 3, 3), np.float32))], {}, 1, "only 1-D and 2-D"),
    ("BatchNormalization", [X, *[C(np.ones(2, np.float32))] * 4], {"training_mode": 1}, 1, "training_mode"),
    ("Reshape", [X, np.array([2, 16], np.int64)], {}, 1, "input 1 \\(shape, %in1\\)"),
])
def test_bad_attribute_values_name_node_and_reason(op, inputs, attrs, n_outputs, reason):
    proto, _ = one_node(op, inputs, attrs, opset=15, n_outputs=n_outputs)
    with pytest.raises(UnsupportedError, match=f"{op.lower()}_node.*{reason}"):
        import_model(proto)
