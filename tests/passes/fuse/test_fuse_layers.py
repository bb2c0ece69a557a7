"""The fuse-layers passes: which conv chains they group, the strip height the cost model
picks, and the numbers (interpreter before/after, and the compiled module)."""
import numpy as np
import pytest

from nnforge.ir import Graph, TensorType, interpret
from nnforge.passes import PassManager
from nnforge.passes.fuse.layers import choose_tiling, conv_chains, fuse_layers, strip_working_set

rng = np.random.default_rng(0)


def _conv(g, x, m, k=3, pad=1, stride=1, bias=True, relu=True):
    c = x.type.shape[1]
    w = g.constant((rng.standard_normal((m, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32), "w")
    ins = [x, w] + ([g.constant(rng.standard_normal(m).astype(np.float32), "b")] if bias else [])
    return g.add_node("Conv", ins, {"pads": (pad,) * 4, "strides": (stride, stride),
                                    "activation": "Relu" if relu else ""})[0]


def _vgg_like(size=20):
    """conv-conv-pool, conv-conv (no bias) -> output, and a conv whose output has two users."""
    g = Graph("vgg_like")
    x = g.add_input("x", TensorType("float32", (1, 3, size, size)))
    a = _conv(g, _conv(g, x, 16), 16)
    p, = g.add_node("MaxPool", [a], {"kernel_shape": (2, 2), "strides": (2, 2)})
    b = _conv(g, _conv(g, p, 32, bias=False), 32, relu=False)
    shared = _conv(g, b, 16)
    g.set_outputs([g.add_node("Add", [_conv(g, shared, 16), shared])[0]])
    return g


def _feeds(g):
    return {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}


def test_chains_stop_at_shared_values_and_take_the_pool():
    g = _vgg_like()
    chains = [[n.op for n in c] for c in conv_chains(g, 3)]
    # conv, conv, pool | conv, conv, conv (the third's output has two users: it ends the chain)
    assert chains == [["Conv", "Conv", "MaxPool"], ["Conv", "Conv", "Conv"]]
    assert [[n.op for n in c] for c in conv_chains(g, 2)] == [["Conv", "Conv", "MaxPool"], ["Conv", "Conv"]]


@pytest.mark.parametrize("halo", [None, "recompute", "reuse"])
def test_forced_fusion_keeps_numbers(halo):
    from nnforge.codegen.kernel import CpuTarget

    g = _vgg_like()
    out = fuse_layers(g, 2, l2_bytes=64 * 1024, force=True, halo=halo)
    assert out.op_histogram() == {"FusedLayerConv": 2, "Conv": 2, "Add": 1}
    assert g.op_histogram()["Conv"] == 6  # input untouched
    fused = [n for n in out.nodes if n.op == "FusedLayerConv"]
    assert fused[0].attrs["pool_kernel"] == (2, 2) and fused[1].attrs["activations"] == "Relu,"
    assert all(n.attrs["halo"] == (halo or "reuse") and n.attrs["bands"] == CpuTarget.host().num_cores
               for n in fused)
    feeds = _feeds(g)
    np.testing.assert_allclose(interpret(out, feeds)[0], interpret(g, feeds)[0], rtol=1e-5, atol=1e-5)


def test_cost_model_picks_the_tallest_strip_that_fits():
    g = _vgg_like(size=64)
    chain = conv_chains(g, 2)[0]
    budget = strip_working_set(chain, 4)
    rows, halo = choose_tiling(chain, budget, force=True)
    assert rows == 4 and strip_working_set(chain, rows + 1) > budget
    assert halo == "reuse"  # same line buffers, fewer rows computed
    assert choose_tiling(chain, budget, force=True, halos=("recompute",)) == (4, "recompute")
    # intermediates that fit the cache already: nothing to save, auto leaves the chain alone
    assert choose_tiling(chain, 64 * 1024 * 1024) is None


def test_auto_fuses_only_where_the_codegen_expects_the_fused_kernel_faster():
    from nnforge.codegen.kernel import CpuTarget
    from nnforge.passes.fuse.layers import fused_seconds, layer_attrs, unfused_seconds

    g = _vgg_like(size=64)
    chain = conv_chains(g, 2)[0]
    budget = strip_working_set(chain, 4)
    target = CpuTarget.host()
    rows, halo = choose_tiling(chain, budget, force=True)
    faster = fused_seconds(chain, layer_attrs(chain, rows, target.num_cores, halo), target) < unfused_seconds(
        chain, target)
    assert (choose_tiling(chain, budget) is not None) == faster
    slow = CpuTarget(target.mcpu, target.num_cores, target.vector_lanes, memory_bandwidth=1e15)
    assert choose_tiling(chain, budget, target=slow) is None  # no traffic cost: the unfused Winograd wins


def test_compiled_fused_model_matches_interpreter():
    import nnforge

    g = _vgg_like(size=19)
    fused = PassManager(["fuse-layers-3"], verify=True, validate=True).run(g)
    assert fused.op_histogram().get("FusedLayerConv") == 2
    cm = nnforge.compile(fused, cache=False)
    feeds = _feeds(g)
    np.testing.assert_allclose(cm.run(feeds)[0], interpret(g, feeds)[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode, passes", [("off", []), ("auto", ["fuse-layers"]), ("2", ["fuse-layers-2"])])
def test_cli_switch(mode, passes):
    from nnforge.cli import fuse_layers_passes

    assert fuse_layers_passes(mode) == passes


def test_cli_switch_rejects_bad_values():
    from nnforge.cli import fuse_layers_passes

    with pytest.raises(SystemExit, match="--fuse-layers expects auto, off, 2 or 3"):
        fuse_layers_passes("7")


def test_cli_compile_with_fuse_layers(tmp_path):
    """`nnforge compile --fuse-layers 2` on an ONNX conv-relu-conv-relu-pool model: the artifact
    runs one fused kernel and matches the interpreter."""
    import json

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from nnforge.cli import main
    from nnforge.driver import import_graph

    def conv(name, x, cin, cout):
        w = numpy_helper.from_array((rng.standard_normal((cout, cin, 3, 3)) / 5).astype(np.float32), name + "_w")
        return [w], [helper.make_node("Conv", [x, w.name], [name], pads=[1, 1, 1, 1]),
                     helper.make_node("Relu", [name], [name + "_r"])]

    w1, n1 = conv("c1", "x", 3, 16)
    w2, n2 = conv("c2", "c1_r", 16, 16)
    pool = helper.make_node("MaxPool", ["c2_r"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    graph = helper.make_graph(n1 + n2 + [pool], "vgg_block",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 14, 14])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 7, 7])],
                              initializer=w1 + w2)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    path, out = tmp_path / "m.onnx", tmp_path / "art"
    onnx.save(model, path)
    assert main(["compile", str(path), "-o", str(out), "--fuse-layers", "2", "--no-cache"]) == 0
    kernels = json.loads((out / "manifest.json").read_text())
    assert "FusedLayerConv" in json.dumps(kernels) and '"Conv"' not in json.dumps(kernels)
    x = np.random.default_rng(3).standard_normal((1, 3, 14, 14)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(out), "--input", f"x={tmp_path / 'x.npy'}", "-o", str(tmp_path / "y.npz")]) == 0
    want = interpret(import_graph(model), {"x": x})[0]
    np.testing.assert_allclose(np.load(tmp_path / "y.npz")["y"], want, rtol=1e-4, atol=1e-5)
