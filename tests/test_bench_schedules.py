"""Schedule benchmarking (`nnforge bench --op`, `--layers`) locally and over TVM RPC."""
import json

import numpy as np
import pytest

from nnforge import bench_schedules as bs
from nnforge.cli import main
from nnforge.codegen import measure
from nnforge.codegen.kernel import CpuTarget, LowerNode
from nnforge.codegen.rules import applicable
from nnforge.errors import NnforgeError
from nnforge.ir import get_op, interpret


def test_op_graph_builds_the_layer_with_constant_weights():
    g = bs.op_graph("conv2d", [(1, 8, 9, 9), (16, 8, 3, 3)], bs.parse_attrs(["pads=1,1,1,1", "group=1"]))
    node = g.nodes[0]
    assert node.op == "Conv" and node.attrs["pads"] == (1, 1, 1, 1)
    assert not node.inputs[0].is_constant and node.inputs[1].is_constant
    assert g.outputs[0].type.shape == (1, 16, 9, 9)


def test_bench_layer_times_every_applicable_variant_and_records_them():
    g = bs.op_graph("Conv", [(1, 16, 12, 12), (16, 16, 3, 3)], {"pads": (1, 1, 1, 1)})
    n = LowerNode.of(g.nodes[0], CpuTarget.host())
    rules = [r.name for r, _ in applicable(n)]
    assert {"conv2d-nchwc-direct", "conv2d-winograd-f4", "conv2d-im2col"} <= set(rules)
    row = bs.bench_layer(g, backends=("nnforge", "ort"), rounds=2, block=1)
    assert set(row["results"]) == set(rules) | {"ort"}
    assert row["chosen"] in rules
    for s in row["results"].values():
        assert 0 < s["min"] <= s["median"] <= s["max"]
    # the medians are in the schedule cache: --measure reads them instead of timing again
    for r, kernel in applicable(n):
        assert measure.measure_seconds(n, r, kernel) == row["results"][r.name]["median"]


def test_layer_graphs_deduplicates_layers_and_keeps_their_semantics():
    from nnforge.ir import Graph
    from nnforge.ir.types import TensorType

    rng = np.random.default_rng(0)
    g = Graph("two")
    x = g.add_input("x", TensorType("float32", (1, 4, 6, 6)))
    w = g.constant(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w")
    (y,) = g.add_node("Conv", [x, w], {"pads": (1, 1, 1, 1)})
    (y,) = g.add_node("Relu", [y])
    (z,) = g.add_node("Conv", [y, w], {"pads": (1, 1, 1, 1)})
    g.set_outputs([z])
    layers = bs.layer_graphs(g)
    assert len(layers) == 1  # the second conv is the same layer
    x0 = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    conv = get_op("Conv")
    expected = conv.run([x0, w.data], conv.check_attrs({"pads": (1, 1, 1, 1)}))[0]
    np.testing.assert_allclose(interpret(layers[0], {"in0": x0})[0], expected, rtol=1e-6)


def test_rpc_tracker_and_two_servers_measure_a_schedule_set():
    from nnforge.codegen.rpc import local_cluster, sessions

    g = bs.op_graph("matmul", [(8, 64), (64, 48)], {})
    with local_cluster("nnforge-test", servers=2, port=9590) as address:
        remote = sessions(address, "nnforge-test", 2)
        row = bs.bench_layer(g, backends=("nnforge",), sessions=remote, rounds=2, block=2, record=False)
    n = LowerNode.of(g.nodes[0], CpuTarget.host())
    assert set(row["results"]) == {r.name for r, _ in applicable(n)} and len(row["results"]) >= 2
    assert all(s["median"] > 0 for s in row["results"].values())


def test_rpc_errors_name_the_address():
    from nnforge.codegen.rpc import parse_address, sessions

    with pytest.raises(NnforgeError, match="HOST:PORT"):
        parse_address("localhost")
    with pytest.raises(NnforgeError, match="127.0.0.1:1"):
        sessions("127.0.0.1:1", "nnforge", 1)


def test_cli_bench_op_writes_table_and_json(tmp_path, capsys):
    out = str(tmp_path / "gemm")
    assert main(["bench", "--op", "gemm", "--shape", "4,32", "--shape", "32,16", "--backends", "nnforge,ort",
                 "--rounds", "1", "-o", out]) == 0
    text = capsys.readouterr().out
    assert "ort" in text and "GFLOPS" in text
    rows = json.load(open(out + ".json"))
    assert rows[0]["op"] == "Gemm" and "ort" in rows[0]["results"]
