"""The engine end to end: refusal of unsound rules, translation validation with blame,
`nnforge.optimize` on a ResNet-style and a BERT-style model checked in ONNX Runtime, CLI."""
import numpy as np
import onnx
import pytest

import nnforge
from nnforge.ir import parse_graph
from nnforge.passes.rewrite import (Rule, TranslationValidationError, UnsoundRuleError, checked,
                                    get_rules, optimize_graph, optimize_model, search, validate)
from nnforge.passes.rewrite.cost import graph_seconds

from .bert_block import bert_block
from .miscompile import broken_batchnorm_fold


def ort_run(model, feeds):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def test_unsound_rule_is_refused_with_counterexample():
    bad = Rule("relu-distributes", "Relu(Add(x, y))", "Add(Relu(x), Relu(y))",
               examples=(dict(x=(2,), y=(2,)),))
    with pytest.raises(UnsoundRuleError, match=r"relu-distributes.*counterexample: \{'x\[0\]'"):
        checked([bad])
    g = parse_graph("graph t(%x: float32[2], %y: float32[2]) {\n  %s = Add(%x, %y)\n"
                    "  %r = Relu(%s)\n  return %r\n}")
    with pytest.raises(UnsoundRuleError, match="relu-distributes"):
        optimize_graph(g, [bad])


def test_rule_without_examples_is_refused():
    with pytest.raises(UnsoundRuleError, match="no examples"):
        checked([Rule("relu-relu-unproved", "Relu(Relu(x))", "Relu(x)")])


def test_translation_validation_names_the_miscompiling_rule(monkeypatch):
    fold, g = broken_batchnorm_fold(monkeypatch)  # proved, then the engine "breaks"
    best, report = search(g, [fold])
    assert report.fired == ["fold-conv-batchnorm"]
    with pytest.raises(TranslationValidationError, match=r"rule 'fold-conv-batchnorm'.*nodes it created: conv_conv"):
        validate(best)


def test_cost_model_folds_constant_only_nodes_for_free():
    g = parse_graph("""graph t(%x: float32[4,4]) {
  %w = const float32[4,4] <elided>
  %t = Transpose(%w) {perm=[1,0]}
  %y = MatMul(%x, %t)
  return %y
}""".replace("<elided>", "[" + ", ".join(["1.0"] * 16) + "]"))
    from nnforge.passes.rewrite.cost import node_seconds

    assert node_seconds(g.nodes[0]) == 0.0 and node_seconds(g.nodes[1]) > 0
    assert graph_seconds(g) == node_seconds(g.nodes[1])


def test_optimize_resnet_matches_onnxruntime():
    from nnforge.models.builders import resnet

    model = resnet(depth=18, num_classes=10, image=32, width=8)
    residual = [r.name for r in get_rules() if "residual" in r.name]  # their pops would use the budget
    out, report = optimize_model(model, disable=residual, max_pops=30)
    onnx.checker.check_model(out)
    assert report.cost_after < 0.85 * report.cost_before
    assert report.fired.count("fold-conv-batchnorm") == 20
    assert not any(n.op_type == "BatchNormalization" for n in out.graph.node)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    assert [o.name for o in out.graph.output] == ["logits"]
    assert rel_err(ort_run(out, {"input": x}), ort_run(model, {"input": x})) <= 1e-4


def test_optimize_bert_block_merges_qkv_and_matches_onnxruntime():
    model = bert_block()
    out, report = optimize_model(model, max_pops=60)
    onnx.checker.check_model(out)
    assert report.cost_after < report.cost_before
    assert {"matmul-add-to-gemm", "merge-parallel-gemms", "merge-gemm-into-split"} <= set(report.fired)
    gemms = [n for n in out.graph.node if n.op_type == "Gemm" and n.input[0] == "x"]
    assert len(gemms) == 1  # Q, K and V in one Gemm
    x = np.random.default_rng(1).standard_normal((8, 16)).astype(np.float32)
    assert rel_err(ort_run(out, {"x": x}), ort_run(model, {"x": x})) <= 1e-4


def test_public_optimize_and_disable():
    model = bert_block()
    out = nnforge.optimize(model, disable=["matmul-add-to-gemm"])
    assert not any(n.op_type == "Gemm" for n in out.graph.node)
    x = np.random.default_rng(2).standard_normal((8, 16)).astype(np.float32)
    assert rel_err(ort_run(out, {"x": x}), ort_run(model, {"x": x})) <= 1e-4


def test_cli_rules_and_optimize(tmp_path, capsys):
    from nnforge.cli import main

    assert main(["rules", "list"]) == 0
    assert "fold-conv-batchnorm" in capsys.readouterr().out
    assert main(["rules", "verify"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 40 and all("proved+tested" in line for line in lines)
    src, dst = tmp_path / "in.onnx", tmp_path / "out.onnx"
    onnx.save(bert_block(), src)
    assert main(["optimize", str(src), "-o", str(dst), "--rules", "matmul-add-to-gemm"]) == 0
    assert "matmul-add-to-gemm x4" in capsys.readouterr().out
    onnx.checker.check_model(onnx.load(dst))
    assert main(["optimize", str(src), "-o", str(dst), "--disable", "no-such-rule"]) == 2
