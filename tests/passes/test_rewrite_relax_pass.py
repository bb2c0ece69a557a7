"""The rewrite as a TVM Relax module pass: a Relax module from the ONNX frontend (with an op we
do not convert, LayerNorm, left opaque) and one from the BlockBuilder; numbers checked in the VM."""
import numpy as np
import pytest

from .bert_block import bert_block

tvm = pytest.importorskip("tvm")
from tvm import relax  # noqa: E402

from nnforge.passes.rewrite.relax_pass import relax_to_graph, rewrite_pass  # noqa: E402


def run(mod, *arrays):
    vm = relax.VirtualMachine(tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"})), tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(a) for a in arrays]).numpy()


def matmuls_reading(mod, name):
    text = mod["main"].script()
    return text.count(f"R.matmul({name},")


@pytest.mark.parametrize("engine", ["taso", "egraph"])
def test_relax_pass_merges_qkv_of_an_onnx_imported_module(engine):
    from tvm.relax.frontend.onnx import from_onnx

    mod = from_onnx(bert_block(), keep_params_in_input=False)
    x = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    want = run(mod, x)
    assert matmuls_reading(mod, "x") == 3
    graph, (opaque, _, _) = relax_to_graph(mod["main"])
    assert [str(b.value.op.name) for b in opaque] == ["relax.nn.layer_norm"]
    assert sum(n.op == "MatMul" for n in graph.nodes) == 6
    rewrite = rewrite_pass(engine=engine, time_limit=10)
    new = rewrite(mod)
    assert matmuls_reading(new, "x") == 1 and "R.split" in new["main"].script()
    assert "R.nn.layer_norm" in new["main"].script()
    (name, report), = rewrite.reports
    assert name == "main" and report.cost_after < report.cost_before
    got = run(new, x)
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))


def test_relax_pass_on_block_builder_module_with_conv_residual_and_transposes():
    from tvm.script import relax as R

    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal((1, 3, 1, 1)).astype(np.float32)
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((1, 3, 8, 8), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, relax.const(w), padding=[1, 1, 1, 1]))
            y = bb.emit(relax.op.add(y, relax.const(b)))
            y = bb.emit(relax.op.add(y, x))  # residual
            y = bb.emit(relax.op.nn.relu(y))
            t = bb.emit(relax.op.permute_dims(y, [0, 1, 3, 2]))
            t = bb.emit(relax.op.permute_dims(t, [0, 1, 3, 2]))
            out = bb.emit_output(relax.op.sum(t, axis=[1]))  # not converted: stays opaque
        bb.emit_func_output(out)
    mod = bb.get()
    xs = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    want = run(mod, xs)
    new = rewrite_pass(engine="egraph", time_limit=10)(mod)
    text = new["main"].script()
    assert "permute_dims" not in text and text.count("R.nn.conv2d") == 1 and "R.sum" in text
    got = run(new, xs)
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))
