"""Calibrators on known distributions, and activation/weight/bias/requantization parameters."""
import numpy as np
import pytest

from nnforge.passes.quantize.calibrate import HIST_BINS, Stats, entropy_threshold, percentile_threshold
from nnforge.ir import get_op
from nnforge.ir.ops.quant import fixed_point
from nnforge.passes.quantize.qparams import activation_qparams, quantize_bias, quantize_weights


def _hist(x):
    a = np.abs(x)
    return np.histogram(a, bins=HIST_BINS, range=(0, a.max()))[0], float(a.max())


def test_percentile_of_a_gaussian_is_its_quantile():
    x = np.random.default_rng(0).standard_normal(400_000)
    hist, amax = _hist(x)
    # P(|x| < 3.29) = 99.9% for N(0, 1); one bin of slack
    assert abs(percentile_threshold(hist, amax, 99.9) - 3.29) < amax / HIST_BINS + 0.02


def test_entropy_clips_a_gaussian_tail_but_not_a_uniform():
    rng = np.random.default_rng(1)
    hist, amax = _hist(rng.standard_normal(400_000))
    t = entropy_threshold(hist, amax)
    assert 2.5 < t < amax  # clips the rare tail, keeps the bulk
    hist, amax = _hist(rng.uniform(-1, 1, 400_000))
    assert entropy_threshold(hist, amax) > 0.97 * amax  # nothing to gain from clipping


def test_stats_range_per_calibrator():
    s = Stats(lo=-1.0, hi=10.0)
    s.hist[:10] = 100
    s.hist[-1] = 1  # one outlier near 10
    assert s.range("minmax") == (-1.0, 10.0)
    lo, hi = s.range("percentile", 99.0)
    assert lo == -hi and 0 < hi < 0.1  # one threshold on |x| clips both ends
    with pytest.raises(Exception, match="unknown calibrator"):
        s.range("mse")


def _quantize(p, x):
    return get_op("QuantizeLinear").run([x, np.float32(p.scale), np.array(p.zero_point, p.dtype)], {"axis": 1})[0]


def test_activation_qparams_cover_the_range_and_zero():
    p = activation_qparams(-1.0, 3.0, power_of_two=False)
    assert p.dtype == "uint8" and _quantize(p, np.float32(0.0)) == p.zero_point
    back = (_quantize(p, np.array([-1.0, 3.0], np.float32)).astype(float) - p.zero_point) * p.scale
    np.testing.assert_allclose(back, [-1.0, 3.0], atol=p.scale / 2 + 1e-7)
    p2 = activation_qparams(0.5, 3.0, power_of_two=True)  # range widened to [0, 3]
    assert p2.dtype == "int8" and p2.zero_point == 0 and p2.scale == 2.0 ** -5  # 3/127 -> 1/32


def test_weights_per_channel_symmetric_and_bias_int32():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * np.array([1, 10, 0.1, 0])[:, None, None, None]
    q, scales = quantize_weights(w, 0, power_of_two=False)
    assert q.dtype == np.int8 and np.abs(q).max() == 127
    assert [int(np.abs(q[c]).max()) for c in range(3)] == [127, 127, 127] and not q[3].any()
    np.testing.assert_allclose(q * scales[:, None, None, None], w, atol=scales.max() / 2 + 1e-6)
    q7, _ = quantize_weights(w, 0, power_of_two=False, bits=7)
    assert np.abs(q7).max() == 63
    _, s2 = quantize_weights(w, 0, power_of_two=True)
    assert len(set(s2)) == 1 and np.log2(s2[0]) == int(np.log2(s2[0]))
    b = rng.standard_normal(4).astype(np.float32)
    qb = quantize_bias(b, 0.05, scales)
    assert qb.dtype == np.int32
    np.testing.assert_allclose(qb * 0.05 * scales, b, atol=float((0.05 * scales).max()))


@pytest.mark.parametrize("m", [0.3, 1e-3, 0.9999999, 3.7, 2.0 ** -20])
def test_fixed_point_multiplier_is_accurate(m):
    (mult,), (shift,) = fixed_point(np.array([m]))
    assert 0 < mult < 2**31 and 0 <= shift <= 62
    assert abs(mult / 2.0**shift - m) <= m * 2.0 ** -30
