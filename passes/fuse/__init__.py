"""Operator fusion: chains of elementwise ops into one FusedElementwise kernel
(elementwise.py) and consecutive convs into one tile-by-tile FusedLayerConv (layers.py)."""
from . import elementwise, layers  # noqa: F401  (register their passes)
