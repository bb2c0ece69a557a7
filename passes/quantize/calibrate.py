"""Calibration: observe every float activation over user data and pick its quantization range.

An observer is an `ir.Interpreter` that watches each node's float outputs. The first pass
records min/max (of a Conv with a fused residual or float activation, also of its output
before them, see `linear_name`); calibrators that need a distribution (percentile, entropy) make a second
pass that fills a histogram of |x| over [0, max |x|] with HIST_BINS bins. A calibrator then
maps those statistics to a range [lo, hi] per value (see `Stats.range`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import NnforgeError
from ...ir.interpreter import Interpreter
from ...ir.registry import get_op

HIST_BINS = 2048
CALIBRATORS = ("minmax", "percentile", "entropy")


@dataclass
class Stats:
    """What calibration saw of one float value."""

    lo: float = np.inf
    hi: float = -np.inf
    hist: np.ndarray = field(default_factory=lambda: np.zeros(HIST_BINS, np.int64))

    @property
    def absmax(self) -> float:
        return max(abs(self.lo), abs(self.hi))

    def range(self, calibrator: str, percentile: float = 99.99, levels: int = 128) -> tuple:
        """(lo, hi) for `calibrator`: minmax keeps what was seen; percentile and entropy pick a
        threshold T on |x| and clip the seen range to [-T, T]."""
        if calibrator == "minmax" or self.absmax == 0:
            return self.lo, self.hi
        if calibrator == "percentile":
            t = percentile_threshold(self.hist, self.absmax, percentile)
        elif calibrator == "entropy":
            t = entropy_threshold(self.hist, self.absmax, levels)
        else:
            raise NnforgeError(f"unknown calibrator {calibrator!r}; available: {list(CALIBRATORS)}")
        return max(self.lo, -t), min(self.hi, t)


# Conv activations a QConv computes itself (Relu6 as Relu + an integer Clip)
INTEGER_ACTIVATIONS = ("", "Relu", "Relu6")


def has_float_epilogue(node) -> bool:
    """Whether a Conv's fused residual or activation must run in float after the QConv."""
    return node.op == "Conv" and (len(node.inputs) > 3 or node.attrs["activation"] not in INTEGER_ACTIVATIONS)


def residual_path(graph) -> set:
    """Names of the values on residual paths: the residual inputs of Convs and the sums those
    Convs output. Calibration keeps their whole seen range: a value clipped there (as the entropy
    threshold does) passes its error down the skip connection, with no ReLU or later layer to
    absorb it (ResNet-18 at 32: cosine 0.963 with entropy-clipped residuals, 0.998 without)."""
    convs = [n for n in graph.nodes if n.op == "Conv" and len(n.inputs) > 3]
    return {n.inputs[3].name for n in convs} | {n.outputs[0].name for n in convs}


def linear_name(conv) -> str:
    """The calibration name of a fused Conv's output before its residual and activation."""
    return f"{conv.outputs[0].name}:linear"


class _Observer(Interpreter):
    """Runs the graph and updates `stats` for every float graph input and node output."""

    def __init__(self, graph, stats: dict, histogram: bool):
        super().__init__(graph)
        self.stats, self.histogram = stats, histogram

    def run(self, feeds):
        for v in self.graph.inputs:
            self.observe(v.name, np.asarray(feeds[v.name]))
        return super().run(feeds)

    def run_node(self, node, args):
        outs = super().run_node(node, args)
        for v, a in zip(node.outputs, outs):
            self.observe(v.name, a)
        if has_float_epilogue(node):
            self.observe(linear_name(node), get_op("Conv").run(args[:3], {**node.attrs, "activation": ""})[0])
        return outs

    def observe(self, name: str, a: np.ndarray):
        if a.dtype.kind != "f" or a.size == 0:
            return
        s = self.stats.setdefault(name, Stats())
        if not self.histogram:
            s.lo, s.hi = min(s.lo, float(a.min())), max(s.hi, float(a.max()))
        elif s.absmax > 0:
            s.hist += np.histogram(np.abs(a), bins=HIST_BINS, range=(0.0, s.absmax))[0]


def collect_stats(graph, feeds_list: list, calibrator: str) -> dict:
    """Value name -> Stats of every float value of `graph` over all feeds in `feeds_list`.

    Args:
        graph: the float ir.Graph.
        feeds_list: feed dicts (already checked against the graph inputs).
        calibrator: one of CALIBRATORS (decides whether the histogram pass runs).
    """
    if calibrator not in CALIBRATORS:
        raise NnforgeError(f"unknown calibrator {calibrator!r}; available: {list(CALIBRATORS)}")
    stats: dict = {}
    for histogram in (False, True) if calibrator != "minmax" else (False,):
        observer = _Observer(graph, stats, histogram)
        for feeds in feeds_list:
            observer.run(feeds)
    return stats


def percentile_threshold(hist: np.ndarray, absmax: float, percentile: float) -> float:
    """The |x| below which `percentile` % of the histogram's mass lies (bin upper edge)."""
    cdf = np.cumsum(hist) / max(hist.sum(), 1)
    i = int(np.searchsorted(cdf, percentile / 100.0))
    return absmax * min(i + 1, len(hist)) / len(hist)


def entropy_threshold(hist: np.ndarray, absmax: float, levels: int = 128) -> float:
    """The |x| threshold minimizing KL(P || Q) (TensorRT's entropy calibration).

    For each candidate of i bins, P is the histogram cut at i with the clipped tail added to
    its last bin, Q is the cut histogram without that tail merged into `levels` quantization
    levels and spread back evenly over the non-empty bins of each level (so a cut that clips
    much mass is penalized).
    """
    hist = hist.astype(np.float64)
    n = len(hist)
    if hist.sum() == 0:
        return absmax
    best_kl, best_i = np.inf, n
    for i in range(levels, n + 1, max(1, n // 512)):
        p = hist[:i].copy()
        p[-1] += hist[i:].sum()
        level = np.arange(i) * levels // i  # which quantization level each bin falls into
        nonzero = (p != 0).astype(np.float64)
        mass = np.bincount(level, weights=hist[:i], minlength=levels)  # Q does not see the tail
        count = np.bincount(level, weights=nonzero, minlength=levels)
        q = np.where(nonzero > 0, mass[level] / np.maximum(count[level], 1), 0.0)
        kl = _kl(p, q)
        if kl < best_kl:
            best_kl, best_i = kl, i
    return absmax * best_i / n


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    p = p / p.sum()
    qs = q.sum()
    if qs == 0:
        return np.inf
    mask = p > 0
    q = np.where(mask & (q == 0), qs * 1e-4, q)  # smooth: a bin Q misses costs, but finitely
    q = q / q.sum()
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))
