"""The `fuse-elementwise` pass: every tree of float elementwise ops whose intermediate
results have one user each (and are not graph outputs) becomes one FusedElementwise node,
so it runs as one kernel that writes only the final result.

    %t = Add(%x, %y); %u = Relu(%t)      =>      %u = FusedElementwise(%x, %y) {expr="Relu(Add($0,$1))"}

Only intermediates of the output's full shape are fused (a smaller one would be
recomputed at every output element). Node count = kernels launched (codegen/cpu.py makes
one call_tir per node), so this pass is what lowers that count.
"""
from __future__ import annotations

from ...ir.ops.fused import format_expression, parse_expression
from ..manager import register_pass

# float in, same dtype out, one value per output element: what the fused kernel can compute
FUSABLE = frozenset({
    "Relu", "Neg", "Abs", "Sigmoid", "Tanh", "Erf", "Sqrt", "Exp", "Log", "Reciprocal", "Floor", "Ceil",
    "LeakyRelu", "HardSigmoid", "HardSwish", "Clip", "PRelu", "Add", "Sub", "Mul", "Div", "Pow",
    "Max", "Min", "Sum", "Mean", "FusedElementwise"})


def _is_matmul_bias(node) -> bool:
    """Add(MatMul/Gemm output, constant): left alone, it is the bias the quantizer folds into QMatMul."""
    ins = node.inputs
    return node.op == "Add" and len(ins) == 2 and any(
        a.producer is not None and a.producer.op in ("MatMul", "Gemm") and b.is_constant
        for a, b in (ins, ins[::-1]))


def _fusable(node) -> bool:
    return (node.op in FUSABLE and node.outputs[0].type.dtype in ("float32", "float64")
            and not _is_matmul_bias(node))


def fusion_groups(graph) -> list:
    """The groups to fuse: lists of nodes in graph order, the last one the group's root
    (the only member whose output is used outside the group); only groups of 2 or more."""
    users = graph.users()
    outputs = {v.name for v in graph.outputs}
    group_of: dict = {}  # node name -> its group (a list shared by all members)
    for node in graph.nodes:
        if not _fusable(node):
            continue
        group = [node]
        for v in node.inputs:
            p = v.producer
            if (p is not None and p.name in group_of and group_of[p.name] is not group
                    and len(users[v.name]) == 1 and v.name not in outputs
                    and v.type.shape == node.outputs[0].type.shape):
                group = group_of[p.name] + group
        for member in group:
            group_of[member.name] = group
    roots = {id(g): g for g in group_of.values()}
    return sorted((g for g in roots.values() if len(g) > 1), key=lambda g: graph.nodes.index(g[-1]))


def _expression(root, members: set, inputs: list):
    """The expression tree of `root` over the group's external `inputs` (appended as found)."""
    def tree(v):
        if v.producer is not None and v.producer.name in members:
            node = v.producer
            if node.op == "FusedElementwise":  # a group fused earlier: splice its expression in
                inner = parse_expression(node.attrs["expr"])
                return _substitute(inner, [tree(a) for a in node.inputs])
            return node.op, dict(node.attrs), [tree(a) for a in node.inputs]
        for i, seen in enumerate(inputs):
            if seen is v:
                return i
        inputs.append(v)
        return len(inputs) - 1

    return tree(root.outputs[0])


def _substitute(tree, args: list):
    """`tree` with each `$i` replaced by args[i]."""
    if isinstance(tree, int):
        return args[tree]
    op, attrs, operands = tree
    return op, attrs, [_substitute(a, args) for a in operands]


@register_pass("fuse-elementwise")
def fuse_elementwise(graph):
    """Fuse trees of elementwise ops into FusedElementwise nodes (one kernel each)."""
    g = graph.copy()
    renames = []
    for group in fusion_groups(g):
        root, inputs = group[-1], []
        expr = format_expression(_expression(root, {n.name for n in group}, inputs))
        old = root.outputs[0]
        new = g.add_node("FusedElementwise", inputs, {"expr": expr}, name=f"fused_{root.name}")[0]
        g.replace_all_uses(old, new)
        if any(o is new for o in g.outputs):
            renames.append((new, old.name))
    g.toposort()
    g.remove_dead()
    rename_outputs(renames)
    return g


def rename_outputs(renames):
    """Give replaced graph outputs their old names back: [(new value, old name)], called after
    the old values are dead (so the name is free; renaming a fresh value rewires nothing)."""
    for value, name in renames:
        value.name = name
