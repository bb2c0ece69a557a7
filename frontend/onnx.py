"""The ONNX importer: ONNX ModelProto -> nnforge IR Graph (static shapes, normalized ops).

    graph = import_model("resnet50.onnx", input_shapes={"data": (1, 3, 224, 224)})

Steps: parse and check versions; reject every unsupported op at once; make graph
inputs and initializers; sort the nodes; convert each with its table entry in
`onnx_ops`/`onnx_ops_nn` (folding constants); check declared output shapes.
"""
from __future__ import annotations

from collections import ChainMap

import numpy as np

from ..errors import ModelError, UnsupportedError
from ..ir import Graph, TensorType
from .onnx_graph import toposort, value_names, walk_nodes
from .onnx_load import DEFAULT_DOMAINS, default_opset, load_model, numpy_dtype, tensor_to_array
from .onnx_node import OnnxNode
from .onnx_ops import CONVERTERS

__all__ = ["import_model"]


def import_model(model, input_shapes: dict | None = None, name: str | None = None) -> Graph:
    """Import an ONNX model as an nnforge IR graph.

    Args:
        model: an onnx.ModelProto, a path to a .onnx file, or its bytes.
        input_shapes: input name -> shape, fixing symbolic or unknown dims.
        name: the graph name (default: the ONNX graph name).
    Returns:
        an ir.Graph with static shapes, whose inputs and outputs carry the ONNX names.
    Raises:
        ModelError: malformed model, unsupported version, inconsistent shapes.
        UnsupportedError: ops, attributes or dtypes nnforge does not implement
            (`.items` lists every unsupported op of the model).
    """
    proto, label = load_model(model)
    opset = default_opset(proto, label)
    _check_supported(proto.graph, {o.domain or "ai.onnx": o.version for o in proto.opset_import})
    try:
        return _Importer(proto.graph, opset, name or proto.graph.name or "graph").run(input_shapes or {})
    except ModelError as e:  # say which model: a file cut at a field boundary still parses
        raise ModelError(f"{label}: {e}") from e


def _check_supported(graph, opsets: dict):
    """Raise one UnsupportedError listing every node whose op we cannot convert.

    Args:
        graph: the GraphProto (subgraphs are checked too).
        opsets: domain ("ai.onnx" for the default one) -> imported opset version.
    """
    items = []
    for node in walk_nodes(graph):
        domain = node.domain if node.domain not in DEFAULT_DOMAINS else "ai.onnx"
        opset = f"{domain}:{opsets.get(domain, '?')}"
        if domain != "ai.onnx":
            items.append((node.op_type, opset, node.name, "operator domain not supported"))
        elif node.op_type not in CONVERTERS and node.op_type != "If":
            items.append((node.op_type, opset, node.name, "operator not supported"))
    if items:
        listing = "; ".join(f"{op} ({domain}) at node {name or '<unnamed>'}"
                            for op, domain, name, _ in items)
        raise UnsupportedError(f"{len(items)} unsupported operator(s): {listing}", items=items)


class _Importer:
    """Builds one Graph from one ONNX GraphProto (If branches are inlined into it)."""

    def __init__(self, graph_proto, opset: int, name: str):
        self.proto = graph_proto
        self.opset = opset
        self.graph = Graph(name)
        # ONNX value names are kept for IR values, so IR node names and helper values avoid them.
        self.reserved = value_names(graph_proto)
        self.used = {n for node in walk_nodes(graph_proto) for n in node.input} | \
            {v.name for v in graph_proto.output}
        self._node_count = 0

    def fresh_name(self, base: str) -> str:
        """A name derived from `base` that is no ONNX value name (the graph makes it unique)."""
        name, i = base, 0
        while name in self.reserved:
            i += 1
            name = f"{base}_{i}"
        return name

    def run(self, input_shapes: dict) -> Graph:
        env = self._inputs(input_shapes)
        self._convert_body(self.proto, env)
        outputs = [_lookup(env, v.name, "graph output") for v in self.proto.output]
        self.graph.set_outputs(self._named_outputs(outputs, [v.name for v in self.proto.output]))
        _check_declared_types(list(self.proto.output) + list(self.proto.value_info), env)
        return self.graph

    def _inputs(self, input_shapes: dict) -> dict:
        """Graph inputs (those with an initializer are constants) and initializers."""
        env = self._initializers(self.proto, {})
        runtime = [v for v in self.proto.input if v.name not in env]
        unknown = set(input_shapes) - {v.name for v in runtime}
        if unknown:
            raise ModelError(f"input_shapes names {sorted(unknown)}, which are not inputs of the "
                             f"model; its inputs are {[v.name for v in runtime]}")
        for v in runtime:
            if v.name in env:
                raise ModelError(f"graph input {v.name!r} is declared twice")
            env[v.name] = self.graph.add_input(v.name, _input_type(v, input_shapes.get(v.name)))
        return env

    def _initializers(self, graph_proto, env) -> dict:
        """Add a graph's initializers to `env` as constants; returns `env`."""
        for tensor in graph_proto.initializer:
            env[tensor.name] = self.graph.constant(tensor_to_array(tensor, f"initializer {tensor.name!r}"),
                                                   tensor.name)
        return env

    def _convert_body(self, graph_proto, env, renames=None):
        """Convert a graph's nodes (in dependency order) into self.graph, filling `env`.

        `renames` maps ONNX value names to the IR names their values should carry (an
        inlined branch's outputs take the If's output names).
        """
        names = [self._node_name(node) for node in graph_proto.node]
        for i, node in toposort(list(graph_proto.node), set(env), names):
            inputs = [_lookup(env, n, f"input of node {names[i]}") if n else None for n in node.input]
            onnx_node = OnnxNode(node, names[i], self.opset, inputs, self,
                                 [(renames or {}).get(n, n) for n in node.output])
            if node.op_type == "If":
                outputs = self._inline_if(onnx_node, env)
            else:
                outputs = CONVERTERS[node.op_type](onnx_node)
            for k, out in enumerate(node.output):
                if k < len(outputs) and outputs[k] is not None:
                    env[out] = outputs[k]
                elif out in self.used:
                    raise onnx_node.unsupported(f"output {k} ({out!r}) is used, but nnforge only "
                                                f"supports the inference outputs of {node.op_type}")

    def _node_name(self, node) -> str:
        self._node_count += 1
        return self.fresh_name(node.name or f"{node.op_type.lower()}_{self._node_count}")

    def _inline_if(self, node: OnnxNode, env) -> list:
        """An If whose condition is a constant: import the taken branch in place."""
        cond = node.static(0, "cond")
        if cond is None or cond.size != 1:
            raise node.model_error("the condition must be a single boolean")
        branch = node.attr("then_branch" if bool(cond.reshape(())) else "else_branch")
        scope = self._initializers(branch, ChainMap({}, env))
        self._convert_body(branch, scope, dict(zip((v.name for v in branch.output), node.outputs)))
        values = [_lookup(scope, v.name, f"output of a branch of node {node.name}")
                  for v in branch.output]
        if len(values) != len(node.outputs):
            raise node.model_error(f"the branch has {len(values)} outputs, the If has "
                                   f"{len(node.outputs)}")
        return values

    def _named_outputs(self, values: list, names: list) -> list:
        """Graph outputs carrying their ONNX names.

        An output that is an alias (Identity of an input, the same value twice, a folded
        constant under another name) gets a copy named after it, so names stay exact.
        """
        named, taken = [], set()
        for value, name in zip(values, names):
            if value.name == name and name not in taken:
                named.append(value)
            elif value.is_constant:
                named.append(self.graph.constant(value.data, name))
            else:
                named.append(self.graph.add_node("Reshape", [value], {"shape": value.type.shape},
                                                 name=self.fresh_name(f"{name}_copy"),
                                                 output_names=[name])[0])
            taken.add(name)
        return named


def _lookup(env, name: str, what: str):
    try:
        return env[name]
    except KeyError:
        raise ModelError(f"{what}: value {name!r} is not defined") from None


def _declared_shape(value_info):
    """(dtype or None, dims or None): dims are ints, or None where symbolic/unknown."""
    ttype = value_info.type.tensor_type
    dtype = numpy_dtype(ttype.elem_type, f"value {value_info.name!r}") if ttype.elem_type else None
    if not ttype.HasField("shape"):
        return dtype, None
    return dtype, [d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim]


def _input_type(value_info, given) -> TensorType:
    """The TensorType of a run-time input: declared dims, symbolic ones fixed by `given`."""
    name = value_info.name
    if not value_info.type.HasField("tensor_type"):
        raise UnsupportedError(f"graph input {name!r} is not a tensor (sequence, map or optional)",
                               items=[("input", "", name, "not a tensor")])
    dtype, dims = _declared_shape(value_info)
    if dtype is None:
        raise ModelError(f"graph input {name!r} declares no element type")
    if given is not None:
        given = tuple(int(d) for d in given)
        if dims is not None and (len(dims) != len(given) or
                                 any(d is not None and d != g for d, g in zip(dims, given))):
            raise ModelError(f"input_shapes gives {name!r} the shape {given}, which contradicts its "
                             f"declared shape {_show_dims(value_info)}")
        return TensorType(dtype, given)
    if dims is None or None in dims:
        missing = "its shape is not declared" if dims is None else \
            f"dimension(s) {_show_dims(value_info)} are symbolic or unknown"
        raise ModelError(f"graph input {name!r}: {missing}; fix it with input_shapes={{{name!r}: (...)}}")
    return TensorType(dtype, dims)


def _show_dims(value_info) -> str:
    dims = value_info.type.tensor_type.shape.dim
    return "(" + ", ".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?")
                           for d in dims) + ")"


def _check_declared_types(value_infos, env):
    """ModelError when a declared output / value_info type contradicts what import inferred."""
    for info in value_infos:
        value = env.get(info.name)
        if value is None or not info.type.HasField("tensor_type"):
            continue
        dtype, dims = _declared_shape(info)
        got = value.type
        shape_ok = dims is None or (len(dims) == got.rank and
                                    all(d is None or d == g for d, g in zip(dims, got.shape)))
        if not shape_ok or (dtype is not None and np.dtype(dtype) != np.dtype(got.dtype)):
            raise ModelError(f"value {info.name!r} is declared {dtype}{_show_dims(info)} but the "
                             f"model computes {got}")
