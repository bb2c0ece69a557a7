"""Post-training int8 quantization: calibrate a float graph on user data, then rewrite its convs
and matmuls with constant weights into QConv / QMatMul (see rewrite.py and qparams.py).

    from nnforge.passes.quantize import quantize, quantize_pass
    qgraph = quantize(graph, [{"input": x0}, {"input": x1}], calibrator="entropy")
    cm = nnforge.compile(model, passes=[*DEFAULT_PIPELINE, "quantize:int8,calib=calib/,calibrator=entropy"])

The pass "quantize:int8,calib=DIR[,calibrator=NAME][,power-of-two][,weight-bits=7]" is what the
CLI's `--quantize int8 --calib DIR` runs after the default passes. The compile cache keys on that
name, not on the files in DIR: compile with cache=False after changing them (the CLI does).
"""
from __future__ import annotations

import os

from ...errors import NnforgeError
from ..manager import Pass, register_pass_factory
from .calib_data import check_calibration_feeds, load_calibration_dir
from . import qdq  # noqa: F401  (registers the fold-qdq pass)
from .calibrate import CALIBRATORS, collect_stats, residual_path
from .rewrite import Quantizer

__all__ = ["quantize", "quantize_pass", "calibration_ranges", "load_calibration_dir", "CALIBRATORS",
           "quantize_spec"]


def calibration_ranges(graph, calibration, calibrator: str = "percentile", percentile: float = 99.99,
                       power_of_two: bool = False) -> dict:
    """Value name -> calibrated (lo, hi) of every float activation of `graph`.

    Args:
        graph: the float ir.Graph.
        calibration: a list of feed dicts, or a directory of .npy/.npz feeds (calib_data.py).
        calibrator: "minmax", "percentile" or "entropy" (KL divergence).
        percentile: the percentile of |x| kept by the percentile calibrator.
        power_of_two: entropy then searches over the 128 levels of a signed int8 magnitude.
    Values on residual paths keep their whole seen range whatever the calibrator (`residual_path`).
    """
    feeds_list = (load_calibration_dir(calibration, graph) if isinstance(calibration, (str, os.PathLike))
                  else check_calibration_feeds(list(calibration), graph))
    stats = collect_stats(graph, feeds_list, calibrator)
    unclipped = residual_path(graph)
    return {name: s.range("minmax" if name in unclipped else calibrator, percentile,
                          levels=128 if power_of_two or s.lo < 0 else 256)
            for name, s in stats.items()}


def quantize(graph, calibration, calibrator: str = "percentile", power_of_two: bool = False,
             weight_bits: int = 8, percentile: float = 99.99, int8_outputs: bool = True,
             int8_residuals: bool = True):
    """The int8 version of a float graph (a new graph; `graph` is not modified).

    Args:
        graph: the float ir.Graph (run "simplify" first so batchnorms and relus are folded into
            the convs).
        calibration: a list of feed dicts, or a directory of .npy/.npz feeds.
        calibrator: "minmax", "percentile" (default: the best or tied on every model of
            benchmarks/quantize.py) or "entropy".
        power_of_two: power-of-two scales (multiplier 1, one shift per layer, zero points 0).
        weight_bits: 8, or 7 for kernels whose int16 pair sums must not saturate.
        percentile: for the percentile calibrator.
        int8_outputs: False keeps fp32 weights in the layers that produce graph outputs (see
            rewrite.Quantizer).
        int8_residuals: False runs residual Adds in float even where QConv could add them
            (rewrite.Quantizer; for comparisons).
    Returns:
        an ir.Graph with the same inputs and outputs (float), QConv/QMatMul inside.
    """
    if weight_bits not in (7, 8):
        raise NnforgeError(f"quantize: weight_bits must be 7 or 8, got {weight_bits!r}")
    ranges = calibration_ranges(graph, calibration, calibrator, percentile, power_of_two)
    return Quantizer(graph, ranges, power_of_two, weight_bits, int8_outputs, int8_residuals).run()


def quantize_pass(calibration, calibrator: str = "percentile", power_of_two: bool = False,
                  weight_bits: int = 8) -> Pass:
    """A `quantize` Pass for PassManager / nnforge.compile(passes=[...]) (arguments as `quantize`)."""
    def run(graph):
        return quantize(graph, calibration, calibrator, power_of_two, weight_bits)
    return Pass("quantize", run, "post-training int8 quantization with calibration data", reads_files=True)


def quantize_spec(calib: str, calibrator: str = "percentile", power_of_two: bool = False) -> str:
    """The pass name "quantize:int8,calib=DIR,..." for these options (see `_quantize_factory`)."""
    return f"quantize:int8,calib={calib},calibrator={calibrator}" + ",power-of-two" * power_of_two


@register_pass_factory("quantize")
def _quantize_factory(argument: str) -> Pass:
    """The pass "quantize:int8,calib=DIR[,calibrator=minmax|percentile|entropy][,power-of-two]
    [,weight-bits=7|8]"; NnforgeError naming the bad part otherwise."""
    mode, *items = argument.split(",")
    options = dict(item.partition("=")[::2] for item in items)
    unknown = sorted(set(options) - {"calib", "calibrator", "power-of-two", "weight-bits"})
    if mode != "int8" or unknown or not options.get("calib"):
        raise NnforgeError(f"bad quantize pass {'quantize:' + argument!r}: expected "
                           f"quantize:int8,calib=DIR[,calibrator=NAME][,power-of-two][,weight-bits=7|8]"
                           + (f"; unknown option(s) {unknown}" if unknown else ""))
    calibrator = options.get("calibrator", "percentile")
    if calibrator not in CALIBRATORS:
        raise NnforgeError(f"unknown calibrator {calibrator!r}; available: {list(CALIBRATORS)}")
    if options.get("weight-bits", "8") not in ("7", "8"):
        raise NnforgeError(f"weight-bits must be 7 or 8, got {options['weight-bits']!r}")
    p = quantize_pass(options["calib"], calibrator, "power-of-two" in options, int(options.get("weight-bits", 8)))
    return Pass(f"quantize:{argument}", p.fn, p.doc, reads_files=True)  # the calibration directory
