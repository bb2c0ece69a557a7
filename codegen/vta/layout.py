"""VTA weight packing (VTA_SPEC.md section 6.2): OIHW -> (O/16, I/16, kh, kw, 16o, 16i), channels
zero-padded to multiples of the block. Activation packing and the DRAM image are needed at run
time and live in runtime.vta.layout."""
from __future__ import annotations

import numpy as np

from ...runtime.vta.layout import DramImage, ceil_div, pack_activations, unpack_activations

__all__ = ["DramImage", "ceil_div", "pack_activations", "pack_weights", "unpack_activations"]


def pack_weights(w: np.ndarray, block_out: int, block_in: int) -> np.ndarray:
    """int8 OIHW -> (O/bo, I/bi, kh, kw, bo, bi), zero-padding O and I.

    Args:
        w: int8 (O, I, kh, kw).
    Returns:
        int8 packed weights, contiguous: each [bo][bi] tile is one VTA weight element.
    """
    o, i, kh, kw = w.shape
    wp = np.zeros((ceil_div(o, block_out) * block_out, ceil_div(i, block_in) * block_in, kh, kw), np.int8)
    wp[:o, :i] = w
    wp = wp.reshape(-1, block_out, wp.shape[1] // block_in, block_in, kh, kw)
    return np.ascontiguousarray(wp.transpose(0, 2, 4, 5, 1, 3))
