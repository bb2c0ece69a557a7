"""Import-level behaviour: constant folding, node order, If inlining, names, input shapes."""
import numpy as np
import onnx
import pytest
from onnx import helper

from nnforge.errors import ModelError, UnsupportedError
from nnforge.frontend import import_model
from nnforge.ir import interpret
from tests.frontend.onnx_models import C, check_import, model, one_node, tensor_info

rng = np.random.default_rng(1)
X = rng.standard_normal((2, 3, 4)).astype(np.float32)


def _shape_chain_nodes():
    """y = Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])) + 1: a static [2, 12] reshape."""
    node = helper.make_node
    return [
        node("Shape", ["x"], ["s"]),
        node("Gather", ["s", "zero"], ["n"], axis=0),
        node("Unsqueeze", ["n", "zero_axis"], ["n1"]),
        node("Concat", ["n1", "minus_one"], ["target"], axis=0),
        node("Reshape", ["x", "target"], ["r"]),
        node("Add", ["r", "one"], ["y"]),
    ]


CHAIN_CONSTS = {"zero": np.array(0, np.int64), "zero_axis": np.array([0], np.int64),
                "minus_one": np.array([-1], np.int64), "one": np.array(1.0, np.float32)}


def test_shape_gather_concat_reshape_chain_folds_to_static_reshape():
    proto = model(_shape_chain_nodes(), {"x": X}, ["y"], CHAIN_CONSTS)
    graph = check_import(proto, {"x": X})
    assert [n.op for n in graph.nodes] == ["Reshape", "Add"]
    assert graph.nodes[0].attrs["shape"] == (2, 12)


def test_unsorted_nodes_are_sorted():
    proto = model(_shape_chain_nodes()[::-1], {"x": X}, ["y"], CHAIN_CONSTS)
    check_import(proto, {"x": X})


def test_cycle_and_undefined_value_are_model_errors():
    cycle = [helper.make_node("Relu", ["b"], ["a"], name="first"),
             helper.make_node("Relu", ["a"], ["b"], name="second")]
    with pytest.raises(ModelError, match="cycle"):
        import_model(model(cycle, {"x": X}, ["b"]))
    undefined = [helper.make_node("Add", ["x", "ghost"], ["y"], name="adder")]
    with pytest.raises(ModelError, match="adder.*ghost"):
        import_model(model(undefined, {"x": X}, ["y"]))


def _if_model(cond_nodes):
    """y = If(cond) then Relu(x) * 2 else Neg(x); the branches read x and `two` from outside."""
    then_branch = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["t0"]), helper.make_node("Mul", ["t0", "two"], ["t1"])],
        "then", [], [helper.make_value_info("t1", onnx.TypeProto())])
    else_branch = helper.make_graph([helper.make_node("Neg", ["x"], ["e0"])], "else", [],
                                    [helper.make_value_info("e0", onnx.TypeProto())])
    nodes = cond_nodes + [helper.make_node("If", ["cond"], ["y"], name="branch",
                                           then_branch=then_branch, else_branch=else_branch)]
    return model(nodes, {"x": X}, ["y"], {"two": np.float32(2.0), "three": np.array([3], np.int64)})


@pytest.mark.parametrize("dim_wanted, branch_ops", [(3, ["Relu", "Mul"]), (5, ["Neg"])])
def test_if_with_constant_condition_is_inlined(dim_wanted, branch_ops):
    # cond = Shape(x)[1] == dim_wanted, which folds at import
    cond_nodes = [helper.make_node("Shape", ["x"], ["s"]),
                  helper.make_node("Slice", ["s", "one", "two_i"], ["s1"]),
                  helper.make_node("Equal", ["s1", "wanted"], ["eq"]),
                  helper.make_node("Squeeze", ["eq"], ["cond"])]
    proto = _if_model(cond_nodes)
    for name, value in {"one": [1], "two_i": [2], "wanted": [dim_wanted]}.items():
        proto.graph.initializer.append(onnx.numpy_helper.from_array(np.array(value, np.int64), name))
    graph = check_import(proto, {"x": X})
    assert [n.op for n in graph.nodes] == branch_ops


def test_if_with_runtime_condition_is_unsupported():
    cond_nodes = [helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
                  helper.make_node("Greater", ["total", "two"], ["cond"])]
    with pytest.raises(UnsupportedError, match="branch.*cond"):
        import_model(_if_model(cond_nodes))


def test_symbolic_dim_fixed_by_input_shapes():
    relu = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([relu], "g", [tensor_info("x", np.float32, ("N", 3, 4))],
                              [tensor_info("y", np.float32, ("N", 3, 4))])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=10)
    imported = import_model(proto, input_shapes={"x": (2, 3, 4)})
    assert imported.inputs[0].type.shape == (2, 3, 4)
    np.testing.assert_array_equal(interpret(imported, {"x": X})[0], np.maximum(X, 0))
    with pytest.raises(ModelError, match=r"'x'.*\(N, 3, 4\)"):
        import_model(proto)
    with pytest.raises(ModelError, match=r"'z'.*\['x'\]"):
        import_model(proto, input_shapes={"z": (1,)})
    with pytest.raises(ModelError, match="contradicts"):
        import_model(proto, input_shapes={"x": (2, 5, 4)})


def test_ir3_initializers_listed_as_inputs_are_constants():
    proto, feeds = one_node("Add", [X, C(X * 2)])
    proto.ir_version = 3
    proto.graph.input.append(tensor_info("c1", np.float32, X.shape))
    graph = import_model(proto)
    assert [v.name for v in graph.inputs] == ["in0"]
    np.testing.assert_allclose(interpret(graph, feeds)[0], X * 3)


def test_output_names_are_kept_for_aliases_inputs_and_constants():
    nodes = [helper.make_node("Identity", ["x"], ["same"], name="same"),
             helper.make_node("Relu", ["x"], ["relu"], name="relu"),
             helper.make_node("Identity", ["relu"], ["relu_alias"]),
             helper.make_node("Shape", ["x"], ["shape"])]
    proto = model(nodes, {"x": X}, ["same", "relu", "relu_alias", "shape", "x"])
    graph = check_import(proto, {"x": X})
    assert [v.name for v in graph.outputs] == ["same", "relu", "relu_alias", "shape", "x"]
    assert graph.outputs[3].is_constant


def test_constant_forms_fold():
    node = helper.make_node
    nodes = [node("Constant", [], ["a"], value_floats=[1.0, 2.0]),
             node("Constant", [], ["b"], value_int=3),
             node("Constant", [], ["c"], value=onnx.numpy_helper.from_array(np.float32(0.5))),
             node("ConstantOfShape", ["shape"], ["d"],
                  value=onnx.numpy_helper.from_array(np.array([7], np.int32))),
             node("Range", ["b", "ten", "b"], ["e"]),
             node("Size", ["x"], ["f"]),
             node("Cast", ["b"], ["bf"], to=onnx.TensorProto.FLOAT),
             node("Mul", ["a", "bf"], ["g"]),
             node("Add", ["x", "c"], ["y"])]
    proto = model(nodes, {"x": X}, ["a", "d", "e", "f", "g", "y"],
                  {"shape": np.array([2, 2], np.int64), "ten": np.array(10, np.int64)})
    graph = check_import(proto, {"x": X})
    assert [n.op for n in graph.nodes] == ["Add"]
    assert all(v.is_constant for v in graph.outputs[:5])
