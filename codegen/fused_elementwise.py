"""Lowering rule for FusedElementwise: the whole expression is one `te.compute`, so the
chain it replaced runs as one kernel that reads each input once and writes one output
(no intermediate tensors). Each step is the same TIR expression its own op's kernel uses
(the tables of codegen/elementwise.py), evaluated at the output position.
"""
from __future__ import annotations

from ..errors import CompileError
from ..ir.ops.fused import checked_attrs, evaluate, parse_expression
from .elementwise import ELEMENTWISE, VARIADIC, elementwise_kernel
from .kernel import LowerNode
from .rules import rule


def _step(node: str):
    """apply(op, attrs, values) for `evaluate`: one op's TIR expression."""
    def apply(op, attrs, values):
        attrs = checked_attrs(op, attrs)
        if op in ELEMENTWISE:
            return ELEMENTWISE[op](*values, **attrs)
        if op in VARIADIC:
            combine, finish = VARIADIC[op]
            total = values[0]
            for v in values[1:]:
                total = combine(total, v)
            return finish(total, len(values))
        raise CompileError(f"node {node} (FusedElementwise): step {op} has no elementwise lowering")
    return apply


@rule("FusedElementwise", name="fused-elementwise")
def fused_elementwise(n: LowerNode):
    """Any FusedElementwise: one injective kernel over the broadcast output."""
    tree = parse_expression(n.attrs["expr"])
    return elementwise_kernel(n, lambda *xs: evaluate(tree, list(xs), _step(n.name)),
                              f"fused {n.attrs['expr']}, injective")
