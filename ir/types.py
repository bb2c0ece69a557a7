"""TensorType: a dtype and a static shape."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ShapeError


@dataclass(frozen=True)
class TensorType:
    """The type of an IR value: numpy dtype name plus a static shape.

    Args:
        dtype: a numpy dtype name ("float32", "int64", "bool", ...).
        shape: a tuple of non-negative ints; () is a scalar.
    """

    dtype: str
    shape: tuple

    def __post_init__(self):
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
        shape = tuple(int(d) for d in self.shape)
        if any(d < 0 for d in shape):
            raise ShapeError(f"negative dimension in shape {shape}")
        object.__setattr__(self, "shape", shape)

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.numel * np.dtype(self.dtype).itemsize

    @staticmethod
    def of(array) -> "TensorType":
        """The type of a numpy array."""
        array = np.asarray(array)
        return TensorType(array.dtype.name, array.shape)

    def __str__(self):
        return f"{self.dtype}[{','.join(map(str, self.shape))}]"


def random_array(t: TensorType, rng) -> np.ndarray:
    """Random data of type `t` for tests and measurements: floats ~ N(0, 1), bools fair,
    integers in [0, 5) (small, so they are valid indices and exponents)."""
    dt = np.dtype(t.dtype)
    if dt.kind == "f":
        a = rng.standard_normal(t.shape)
    elif dt.kind == "b":
        a = rng.integers(0, 2, t.shape)
    else:
        a = rng.integers(0, 5, t.shape)
    return np.asarray(a).astype(dt)
