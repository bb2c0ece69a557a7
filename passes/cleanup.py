"""Structural clean-up passes."""
from __future__ import annotations

from .manager import register_pass


@register_pass("eliminate-dead-code")
def eliminate_dead_code(graph):
    """Remove nodes whose outputs never reach a graph output."""
    g = graph.copy()
    g.remove_dead()
    return g
