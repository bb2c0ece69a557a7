"""Our verified rewrites as a TVM Relax pass: Relax dataflow -> ir.Graph -> optimize -> Relax.

    mod = rewrite_pass(engine="egraph")(mod)     # a tvm.ir.transform.module_pass

Each Relax function whose body is one dataflow block is converted: calls of the ops in
TO_IR on static float32 tensors become IR nodes, Relax constants IR constants, parameters
IR inputs. Any other binding stays an opaque Relax binding: its result enters the IR graph
as an input, the IR values it reads leave the graph as outputs. After `optimize_graph`
(translation-validated as always) the block is emitted again with the BlockBuilder, each
IR node just before the first binding that needs it.
"""
from __future__ import annotations

import numpy as np

from ...errors import NnforgeError, UnsupportedError
from ...ir import Graph, TensorType

# relax op -> (our op, attributes from the call)
TO_IR = {
    "relax.matmul": ("MatMul", lambda call, out: {}),
    "relax.add": ("Add", lambda call, out: {}),
    "relax.subtract": ("Sub", lambda call, out: {}),
    "relax.multiply": ("Mul", lambda call, out: {}),
    "relax.divide": ("Div", lambda call, out: {}),
    "relax.nn.relu": ("Relu", lambda call, out: {}),
    "relax.sigmoid": ("Sigmoid", lambda call, out: {}),
    "relax.tanh": ("Tanh", lambda call, out: {}),
    "relax.exp": ("Exp", lambda call, out: {}),
    "relax.negative": ("Neg", lambda call, out: {}),
    "relax.permute_dims": ("Transpose", lambda call, out: {"perm": _perm(call)}),
    "relax.reshape": ("Reshape", lambda call, out: {"shape": out.shape}),
    "relax.nn.softmax": ("Softmax", lambda call, out: {"axis": int(call.attrs.axis) % out.rank}),
    "relax.concat": ("Concat", lambda call, out: {"axis": int(call.attrs.axis) % out.rank}),
    "relax.nn.conv2d": ("Conv", lambda call, out: _conv_attrs(call)),
}


def _perm(call):
    axes = call.attrs.axes
    rank = len(call.args[0].ty.shape)
    return tuple(int(a) % rank for a in axes) if axes is not None else tuple(range(rank))[::-1]


def _conv_attrs(call):
    a = call.attrs
    if (a.data_layout, a.kernel_layout, a.out_layout) != ("NCHW", "OIHW", "NCHW"):
        raise KeyError("layout")  # opaque: only NCHW/OIHW converts
    ints = lambda xs: tuple(int(x) for x in xs)  # noqa: E731
    return {"strides": ints(a.strides), "pads": ints(a.padding), "dilations": ints(a.dilation),
            "group": int(a.groups)}


def _var_name(var) -> str:
    return str(var.name)  # `name_hint` in upstream TVM; this build calls it `name`


def _tensor_type(ty):
    """Our TensorType for a static float32 Relax tensor type, else None."""
    shape = getattr(ty, "shape", None)
    if getattr(ty, "dtype", None) != "float32" or shape is None:
        return None
    try:
        return TensorType("float32", tuple(int(d) for d in shape))
    except (TypeError, ValueError):
        return None


def relax_to_graph(func):
    """(ir.Graph, plan) for a Relax function with one dataflow block, or None.

    The plan: (opaque bindings in order, {relax var: IR value or [values] (Split)},
    [relax vars whose IR value the graph outputs]).
    """
    from tvm import relax

    body = func.body
    if not isinstance(body, relax.SeqExpr) or len(body.blocks) != 1 or not isinstance(
            body.blocks[0], relax.DataflowBlock) or not isinstance(body.body, relax.Var):
        return None
    g = Graph("relax")
    env, opaque, exported = {}, [], []

    def import_var(var):
        t = _tensor_type(var.ty)
        if t is not None:
            name = _var_name(var)
            while any(v.name == name for v in g.inputs):
                name += "_"
            env[var] = g.add_input(name, t)

    for p in func.params:
        import_var(p)

    def operand(x):
        if isinstance(x, relax.Var):
            return env[x]
        value = getattr(x, "value", None)
        if value is not None and hasattr(value, "numpy") and value.dtype == "float32":
            return g.constant(value.numpy(), "c")
        raise KeyError(type(x).__name__)

    for b in body.blocks[0].bindings:
        v, out = b.value, _tensor_type(b.var.ty)
        try:
            if isinstance(v, relax.Var):
                env[b.var] = env[v]
                continue
            if isinstance(v, relax.TupleGetItem):
                env[b.var] = env[v.tuple_value][v.index]
                continue
            op = getattr(getattr(v, "op", None), "name", None)
            if op == "relax.split":
                env[b.var] = _split(g, v, operand)
                continue
            if op in TO_IR and out is not None:
                ours, attrs = TO_IR[op]
                args = list(v.args[0].fields) if op == "relax.concat" else list(v.args)
                (env[b.var],) = g.add_node(ours, [operand(a) for a in args], attrs(v, out),
                                           name=_var_name(b.var))
                if env[b.var].type != out:
                    raise KeyError("type")
                continue
        except (NnforgeError, KeyError, IndexError, TypeError, AttributeError, ValueError):
            env.pop(b.var, None)
        opaque.append(b)
        for used in _free_vars(v):
            if isinstance(env.get(used), list):
                return None  # a whole Split tuple read by an op we keep: leave the function alone
            if used in env and env[used].producer is not None:
                exported.append(used)
        import_var(b.var)
    ret = env.get(body.body)
    if ret is not None and not isinstance(ret, list) and ret.producer is not None:
        exported.append(body.body)
    exported = list(dict.fromkeys(exported))
    g.set_outputs([env[var] for var in exported])
    g.remove_dead()
    return g, (opaque, env, exported)


def _split(g, call, operand):
    x = operand(call.args[0])
    axis = int(call.attrs.axis) % x.type.rank
    n, cuts = x.type.shape[axis], call.attrs.indices_or_sections
    if isinstance(cuts, (int, np.integer)) or hasattr(cuts, "value"):
        k = int(cuts)
        sizes = (n // k,) * k
    else:
        bounds = [0] + [int(c) for c in cuts] + [n]
        sizes = tuple(b - a for a, b in zip(bounds, bounds[1:]))
    return g.add_node("Split", [x], {"axis": axis, "split": sizes}, name="split")


def _free_vars(expr):
    from tvm import relax

    return list(relax.analysis.free_vars(expr))


def graph_to_relax(func, graph, plan, name: str = "main"):
    """The Relax function `name` computing `func` with its IR part replaced by `graph`."""
    from tvm import relax

    opaque, env, exported = plan
    out_of = dict(zip(exported, graph.outputs))
    bb = relax.BlockBuilder()
    made: dict = {}
    inputs = {v.name: v for v in graph.inputs}
    attrs = {k: v for k, v in func.attrs.items()} if func.attrs is not None else None
    with bb.function(name, list(func.params), attrs):
        with bb.dataflow():
            renamed = {p: p for p in func.params}
            by_input = {env[var].name: var for var in list(func.params) + [b.var for b in opaque]
                        if var in env}

            def expr_of(value):
                if value.is_constant:
                    return relax.const(np.asarray(value.data))
                if value.name in inputs and value.producer is None:
                    return renamed[by_input[value.name]]
                _emit_node(bb, value.producer, expr_of, made)
                return made[value.name]

            def resolve(var):
                if var in out_of:
                    return expr_of(out_of[var])
                return renamed[var] if var in renamed else expr_of(env[var])  # an input or constant

            for b in opaque:
                mapping = {var: resolve(var) for var in _free_vars(b.value)}
                renamed[b.var] = bb.emit(_rebind(b.value, mapping), name_hint=_var_name(b.var))
            gv = bb.emit_output(resolve(func.body.body))
        bb.emit_func_output(gv)
    return bb.get()[name]


def _rebind(expr, mapping):
    from tvm import relax

    @relax.expr_functor.mutator
    class Rebind(relax.PyExprMutator):
        def visit_var_(self, var):
            return mapping.get(var, var)

        def visit_dataflow_var_(self, var):
            return mapping.get(var, var)

    return Rebind().visit_expr(expr)


def _emit_node(bb, node, expr_of, made):
    """Emit one IR node (and, through expr_of, what it reads) as Relax ops."""
    from tvm import relax

    if node.outputs[0].name in made:
        return
    op, a = relax.op, node.attrs
    args = [expr_of(v) for v in node.inputs]
    simple = {"MatMul": op.matmul, "Add": op.add, "Sub": op.subtract, "Mul": op.multiply,
              "Div": op.divide, "Relu": op.nn.relu, "Sigmoid": op.sigmoid, "Tanh": op.tanh,
              "Exp": op.exp, "Neg": op.negative, "Abs": op.abs}
    if node.op in simple:
        out = simple[node.op](*args)
    elif node.op == "Transpose":
        out = op.permute_dims(args[0], list(a["perm"]))
    elif node.op == "Reshape":
        out = op.reshape(args[0], list(a["shape"]))
    elif node.op == "Softmax":
        out = op.nn.softmax(args[0], a["axis"])
    elif node.op == "Concat":
        out = op.concat(args, a["axis"])
    elif node.op == "Conv":
        out = op.nn.conv2d(args[0], args[1], list(a["strides"]), list(a["pads"]), list(a["dilations"]),
                           a["group"])
        if len(args) > 2:  # bias [M]
            out = op.add(bb.emit(out), op.reshape(args[2], [1, -1, 1, 1]))
        if len(args) > 3:  # the fused residual (the output's type)
            out = op.add(bb.emit(out), args[3])
        if a["activation"] == "Relu":
            out = op.nn.relu(bb.emit(out))
        elif a["activation"]:
            raise UnsupportedError(f"relax rewrite pass: node {node.name} (Conv): activation "
                                   f"{a['activation']!r} has no Relax form here")
    elif node.op == "Gemm":
        x = op.permute_dims(args[0], [1, 0]) if a["transA"] else args[0]
        w = op.permute_dims(args[1], [1, 0]) if a["transB"] else args[1]
        out = op.matmul(x, w)
        if a["alpha"] != 1.0:
            out = op.multiply(bb.emit(out), relax.const(np.float32(a["alpha"])))
        if len(args) > 2:
            c = args[2] if a["beta"] == 1.0 else op.multiply(args[2], relax.const(np.float32(a["beta"])))
            out = op.add(bb.emit(out), c)
    elif node.op == "Split":
        cuts = np.cumsum(a["split"])[:-1].tolist()
        tup = bb.emit(op.split(args[0], cuts, a["axis"]))
        for i, v in enumerate(node.outputs):
            made[v.name] = bb.emit(relax.TupleGetItem(tup, i))
        return
    else:
        raise UnsupportedError(f"relax rewrite pass: node {node.name} ({node.op}) has no Relax form")
    made[node.outputs[0].name] = bb.emit(out)


def rewrite_function(func, name: str = "main", **optimize_args):
    """(new Relax function, SearchReport) or (func, None) when there is nothing to rewrite."""
    from . import optimize_graph

    converted = relax_to_graph(func)
    if converted is None or not converted[0].nodes:
        return func, None
    graph, plan = converted
    new, report = optimize_graph(graph, **optimize_args)
    return graph_to_relax(func, new, plan, name), report


def rewrite_pass(**optimize_args):
    """A `tvm.ir.transform.module_pass` running optimize_graph on every Relax function.

    Args:
        optimize_args: passed to optimize_graph (engine, rules, disable, time_limit, ...).
    Returns:
        the pass; its `reports` list gets (function name, SearchReport) per rewritten function.
    """
    import tvm
    from tvm import relax

    reports = []

    @tvm.ir.transform.module_pass(opt_level=0, name="NnforgeVerifiedRewrite")
    def transform(mod, ctx):
        for gv, func in list(mod.functions_items()):
            if isinstance(func, relax.Function):
                new, report = rewrite_function(func, gv.name_hint, **optimize_args)
                if report is not None:
                    mod[gv] = new
                    reports.append((gv.name_hint, report))
        return mod

    transform.reports = reports
    return transform
