"""The exact integer semantics VTA layers implement, in numpy: the oracle of the VTA lowering."""
from __future__ import annotations

import numpy as np

from ...runtime.vta.sram import wrap32


def as_pair(v) -> tuple[int, int]:
    """An int or a 2-sequence (stride, padding) as an (h, w) pair of ints."""
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def conv2d_int8_reference(x, w, bias, shift: int, relu: bool = False, *, stride=1, padding=0,
                          out_min: int = -128) -> np.ndarray:
    """int8 conv2d with int32 accumulation and power-of-two requantization.

    acc = wrap32(sum x*w) + bias (wrapping); y = clip((acc + 2**(shift-1)) >> shift, lo, 127)
    with round-half-up (no rounding term when shift == 0) and lo = 0 with ReLU, else `out_min`.

    Args:
        x: int8 NCHW input.
        w: int8 OIHW weight.
        bias: int32 (O,) or None.
        shift: right shift 0..15.
        relu: clip at 0 instead of out_min.
        stride: int or (sh, sw).
        padding: int or (ph, pw), zeros on both sides.
        out_min: lower clip bound without ReLU (-128; VTA_SPEC.md section 6 uses -127).
    Returns:
        int8 NCHW output.
    """
    (sh, sw), (ph, pw) = as_pair(stride), as_pair(padding)
    kh, kw = w.shape[2:]
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    acc = wrap32(np.einsum("nchwij,ocij->nohw", win, w.astype(np.int64))).astype(np.int64)
    if bias is not None:
        acc = wrap32(acc + np.asarray(bias, np.int64)[None, :, None, None]).astype(np.int64)
    if shift > 0:
        acc = wrap32(acc + (1 << (shift - 1))).astype(np.int64) >> shift
    return np.clip(acc, 0 if relu else out_min, 127).astype(np.int8)


def dense_int8_reference(x, w, bias, shift: int, relu: bool = False, *, out_min: int = -128) -> np.ndarray:
    """int8 dense (x: (N, C), w: (O, C)) with the same requantization as conv2d_int8_reference."""
    y = conv2d_int8_reference(x[:, :, None, None], w[:, :, None, None], bias, shift, relu, out_min=out_min)
    return y[:, :, 0, 0]
