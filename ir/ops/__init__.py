"""Every IR op declaration; importing this package registers them all (see ir/OPS.md)."""
from . import elementwise, fused, movement, nn, pool, quant, reduce, resize  # noqa: F401
