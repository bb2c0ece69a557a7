"""The e-graph engine: same or lower cost than the TASO search on small graphs, results checked
against the interpreter, bounded in time and size, blame on a miscompile, CLI/API flag."""
import time

import numpy as np
import onnx
import pytest

from nnforge.errors import NnforgeError
from nnforge.frontend.onnx import import_model
from nnforge.ir import interpret, parse_graph
from nnforge.passes.manager import random_feeds
from nnforge.passes.rewrite import (Limits, TranslationValidationError, checked, get_rules, optimize_graph,
                                    optimize_model, saturation_search, validate_extraction)
from nnforge.passes.rewrite.cost import graph_seconds

from .bert_block import bert_block
from .miscompile import broken_batchnorm_fold

PARALLEL_CONVS = """graph t(%x: float32[1,4,6,6]) {
  %w1 = const float32[4,4,1,1] <w>
  %w2 = const float32[4,4,1,1] <w>
  %g = const float32[4] [1.5, 0.5, 2.0, 1.0]
  %a = Conv(%x, %w1)
  %b = Conv(%x, %w2)
  %an = BatchNormalization(%a, %g, %g, %g, %g) {epsilon=1e-5}
  %ar = Relu(%an)
  %br = Relu(%b)
  %c = Concat(%ar, %br) {axis=1}
  %t = Transpose(%c) {perm=[0,1,3,2]}
  %u = Transpose(%t) {perm=[0,1,3,2]}
  return %u
}"""


def weights(text, seed=0):
    rng = np.random.default_rng(seed)
    while "<w>" in text:
        text = text.replace("<w>", "[" + ", ".join(f"{v:.3f}" for v in rng.standard_normal(16)) + "]", 1)
    return parse_graph(text)


def small_graphs():
    from nnforge.models.builders import resnet

    return {"bert": import_model(bert_block()), "parallel-convs": weights(PARALLEL_CONVS),
            "resnet": import_model(resnet(depth=18, num_classes=10, image=16, width=4))}


def assert_same_numbers(before, after, seed=3):
    feeds = random_feeds(before, seed)
    for want, got in zip(interpret(before, feeds), interpret(after, feeds)):
        assert want.shape == got.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.max(np.abs(want))))


@pytest.mark.parametrize("name", ["bert", "parallel-convs", "resnet"])
def test_egraph_reaches_taso_cost_or_lower(name):
    graph = small_graphs()[name]
    taso, taso_report = optimize_graph(graph, engine="taso", max_pops=60, time_limit=20)
    eg, eg_report = optimize_graph(graph, engine="egraph", time_limit=20)
    assert eg_report.cost_before == pytest.approx(graph_seconds(graph))
    assert eg_report.cost_after == pytest.approx(graph_seconds(eg))
    assert eg_report.cost_after <= taso_report.cost_after * (1 + 1e-9)
    assert eg_report.cost_after < eg_report.cost_before
    assert [v.name for v in eg.outputs] == [v.name for v in graph.outputs]
    assert_same_numbers(graph, eg)


def test_egraph_merges_qkv_into_one_gemm():
    graph = import_model(bert_block())
    out, report = optimize_graph(graph, engine="egraph")
    assert any(name.startswith("merge-") for name in report.fired)
    x = graph.inputs[0]
    gemms = [n for n in out.nodes if n.op == "Gemm" and n.inputs[0].name == x.name]
    assert len(gemms) == 1 and gemms[0].outputs[0].type.shape == (8, 48)
    assert_same_numbers(graph, out)


def test_parallel_convs_fold_fuse_and_cancel_transposes():
    graph = weights(PARALLEL_CONVS)
    out, report = optimize_graph(graph, engine="egraph")
    ops = [n.op for n in out.nodes]
    assert "BatchNormalization" not in ops and "Transpose" not in ops and "Relu" not in ops
    assert "fold-conv-batchnorm" in report.fired or "fuse-conv-relu" in report.fired
    assert_same_numbers(graph, out)


def test_saturation_respects_time_and_node_limits():
    graph = small_graphs()["resnet"]
    rules = checked(get_rules())
    t0 = time.time()
    best, report = saturation_search(graph, rules, Limits(seconds=0.3), extract_seconds=2)
    assert report.stats.stop in ("time limit", "saturated")
    assert report.stats.seconds < 0.3 + 2.0  # one rule application can run past the check
    assert time.time() - t0 < 0.3 + 2 + 5
    validate_extraction(best)
    best, report = saturation_search(graph, rules, Limits(nodes=120), extract_seconds=2)
    assert report.stats.stop == "node limit" and report.stats.enodes < 120 + 100
    validate_extraction(best)
    assert_same_numbers(graph, best.graph)
    best, report = saturation_search(graph, rules, Limits(iterations=1), extract_seconds=2)
    assert report.stats.iterations == 1


def test_egraph_validation_names_the_miscompiling_rule(monkeypatch):
    fold, g = broken_batchnorm_fold(monkeypatch)  # proved, then the engine "breaks"
    best, report = saturation_search(g, [fold])
    assert report.fired == ["fold-conv-batchnorm"]
    with pytest.raises(TranslationValidationError, match=r"e-graph.*Conv.*%z.*fold-conv-batchnorm"):
        validate_extraction(best)


def test_unknown_engine_is_an_nnforge_error():
    with pytest.raises(NnforgeError, match="unknown rewrite engine 'tensat'"):
        optimize_graph(import_model(bert_block()), engine="tensat")


def test_cli_optimize_with_egraph_engine(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    from nnforge.cli import main

    src, dst = tmp_path / "in.onnx", tmp_path / "out.onnx"
    onnx.save(bert_block(), src)
    assert main(["optimize", str(src), "-o", str(dst), "--engine", "egraph", "--time-limit", "10"]) == 0
    assert "e-nodes" in capsys.readouterr().out
    out = onnx.load(dst)
    onnx.checker.check_model(out)
    x = np.random.default_rng(4).standard_normal((8, 16)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]  # noqa: E731
    want = run(bert_block())
    assert np.max(np.abs(run(out) - want)) / np.max(np.abs(want)) <= 1e-4
    model, report = optimize_model(bert_block(), engine="egraph", time_limit=10)
    assert report.cost_after < report.cost_before
