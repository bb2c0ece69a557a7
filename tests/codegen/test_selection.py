"""Schedule selection: cost model, fallbacks, overrides, measurement cache."""
import numpy as np
import pytest

from kernel_harness import Const, run_kernel

from nnforge.codegen import rules
from nnforge.codegen.kernel import CpuTarget, KernelInput, LowerNode
from nnforge.codegen.rules import Rule, ScheduleOptions, select
from nnforge.errors import NnforgeError
from nnforge.ir.types import TensorType


def relu_node(shape=(4, 64)):
    t = TensorType("float32", shape)
    return LowerNode("Relu", "r", {}, [KernelInput(t)], [t], CpuTarget.host())


@pytest.fixture
def relu_rules(monkeypatch):
    """Two extra Relu rules around the real one: a slow family and a fast family."""
    rules._load_rules()
    real = rules.RULES["Relu"]
    fast = Rule("Relu", "relu-fast", "fast", 0.9, real[0].fn)
    slow = Rule("Relu", "relu-slow", "slow", 0.0001, real[0].fn)
    monkeypatch.setitem(rules.RULES, "Relu", [slow, *real, fast])
    return slow, fast


def test_cost_model_picks_cheapest_and_explains(relu_rules):
    slow, fast = relu_rules
    real = rules.RULES["Relu"][1]
    # CPU: compute + memory time, so the fast rule's compute share makes it the cheapest
    choice = select(relu_node((256, 4096)))
    assert choice.rule is fast
    assert f"*{fast.name}" in choice.explain() and "relu-slow" in choice.explain()
    assert select(relu_node((256, 4096)), ScheduleOptions({fast.family: False})).rule is real
    node = relu_node((256, 4096))
    (r, k), = rules.applicable(node, ScheduleOptions({"slow": False, real.family: False}))
    memory = 2 * node.outputs[0].nbytes / node.target.memory_bandwidth
    compute = node.outputs[0].numel / (fast.efficiency * node.target.peak_flops)
    assert rules.estimate_seconds(node, r, k) == pytest.approx(compute + memory, rel=0.05)


def test_roofline_ties_memory_bound_rules(relu_rules, monkeypatch):
    """A target that overlaps memory with compute: real and fast are memory-bound and tie, the earlier wins."""
    slow, fast = relu_rules
    real = rules.RULES["Relu"][1]
    monkeypatch.setattr(CpuTarget, "overlaps_memory", True)
    choice = select(relu_node((256, 4096)))
    assert choice.rule is real
    assert f"*{real.name}" in choice.explain() and "relu-slow" in choice.explain()
    assert select(relu_node((256, 4096)), ScheduleOptions({real.family: False})).rule is fast


def test_overrides_turn_families_off_and_on(relu_rules):
    slow, fast = relu_rules
    node = relu_node((256, 4096))
    assert select(node, ScheduleOptions({"fast": False})).rule is not fast
    assert select(node, ScheduleOptions({"slow": True})).rule is slow
    with pytest.raises(NnforgeError, match="no lowering rule applies"):
        select(node, ScheduleOptions({"fast": False, "slow": False,
                                      rules.RULES["Relu"][1].family: False}))


def test_parse_overrides():
    assert ScheduleOptions.parse("winograd=off, strassen=on").overrides == {"winograd": False, "strassen": True}
    with pytest.raises(NnforgeError, match="FAMILY=on|off"):
        ScheduleOptions.parse("winograd")


def test_fallback_only_when_nothing_else_applies():
    """A float64 Conv has no fast rule: the generic fallback lowers it, and matches the reference."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 3, 8, 8)), rng.standard_normal((4, 3, 3, 3))
    t = TensorType("float64", (1, 3, 8, 8))
    node = LowerNode("Conv", "c", {"strides": (1, 1), "pads": (1, 1, 1, 1), "dilations": (1, 1), "group": 1},
                     [KernelInput(t), KernelInput(TensorType.of(w), w)], [TensorType("float64", (1, 4, 8, 8))],
                     CpuTarget.host())
    assert select(node).rule.fallback
    t32 = TensorType("float32", (1, 3, 8, 8))
    node32 = LowerNode("Conv", "c", node.attrs, [KernelInput(t32), KernelInput(TensorType.of(w.astype("float32")),
                       w.astype("float32"))], [TensorType("float32", (1, 4, 8, 8))], CpuTarget.host())
    assert not select(node32).rule.fallback
    from nnforge.ir import get_op

    (got,) = run_kernel("Conv", node.attrs, [x, Const(w)])
    np.testing.assert_allclose(got, get_op("Conv").run([x, w], node.attrs)[0], rtol=1e-10)


def test_measurement_is_cached_on_disk(relu_rules, tmp_path, monkeypatch):
    from nnforge.codegen import measure

    monkeypatch.setenv("NNFORGE_CACHE_DIR", str(tmp_path))
    calls = []
    real_time = measure.time_kernel
    monkeypatch.setattr(measure, "time_kernel", lambda n, k: calls.append(1) or real_time(n, k))
    node = relu_node()
    first = select(node, ScheduleOptions(measure=True))
    assert all(m is not None and m > 0 for _, _, m in first.candidates)
    n_timed = len(calls)
    assert n_timed == len(first.candidates)
    second = select(node, ScheduleOptions(measure=True))
    assert len(calls) == n_timed  # every candidate came from the cache
    assert [m for _, _, m in second.candidates] == [m for _, _, m in first.candidates]
    assert (tmp_path / "measurements.json").exists()
