"""VTA activation layout (VTA_SPEC.md section 6.2) and the DRAM image a layer runs against.

Activations NCHW -> (N, C/16, H, W, 16) "NCHW1n16c" (batch 1 per tile), channels zero-padded
to a multiple of the block. Running a layer needs these, so they live in runtime; weight
packing (compile time only) is in codegen.vta.layout.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def pack_activations(x: np.ndarray, block: int) -> np.ndarray:
    """int8 NCHW -> (N, C/block, H, W, block), zero-padding C.

    Args:
        x: int8 (N, C, H, W).
        block: VTA BLOCK_IN.
    Returns:
        int8 (N, ceil(C/block), H, W, block), contiguous.
    """
    n, c, h, w = x.shape
    xp = np.zeros((n, ceil_div(c, block) * block, h, w), np.int8)
    xp[:, :c] = x
    return np.ascontiguousarray(xp.reshape(n, -1, block, h, w).transpose(0, 1, 3, 4, 2))


def unpack_activations(packed: np.ndarray, channels: int) -> np.ndarray:
    """(N, C/block, H, W, block) -> NCHW with the padding channels dropped."""
    n, cb, h, w, block = packed.shape
    return np.ascontiguousarray(packed.transpose(0, 1, 4, 2, 3).reshape(n, cb * block, h, w)[:, :channels])


@dataclass
class DramImage:
    """A DRAM image built region by region; each region starts on a 256-byte boundary so its
    offset is a whole number of elements of every memory type (the largest element is 256 B)."""

    align: int = 256
    regions: dict = field(default_factory=dict)  # name -> (byte offset, nbytes)
    size: int = 0

    def add(self, name: str, nbytes: int) -> int:
        """Reserve `nbytes` for `name`; returns its byte offset."""
        offset = ceil_div(self.size, self.align) * self.align
        self.regions[name] = (offset, nbytes)
        self.size = offset + nbytes
        return offset

    def elem(self, name: str, elem_bytes: int) -> int:
        """Start of region `name` in elements of `elem_bytes` bytes (a dram_base)."""
        return self.regions[name][0] // elem_bytes

    def view(self, dram: np.ndarray, name: str) -> np.ndarray:
        """The bytes of region `name` inside `dram`."""
        offset, nbytes = self.regions[name]
        return dram[offset:offset + nbytes]

    def allocate(self) -> np.ndarray:
        """A zeroed uint8 buffer of the image's size."""
        return np.zeros(ceil_div(self.size, self.align) * self.align, np.uint8)
