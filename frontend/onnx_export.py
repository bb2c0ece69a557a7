"""export_model: an nnforge IR graph back to an ONNX model (opset 17, IR version 9).

IR attributes that ONNX-17 takes as tensor inputs (Reshape shape, Slice bounds, Split
sizes, Pad pads/value, Clip bounds, ReduceSum axes, Expand shape, Tile repeats, Resize
roi/scales/sizes) become initializers; every other attribute maps one to one, except a
Conv's fused residual input and `activation` (not ONNX): Conv(x, w, b, r) with
activation="Relu" becomes Conv + Add + Relu. QConv / QMatMul become QDQ patterns
(DequantizeLinear -> Conv/MatMul -> QuantizeLinear, see `_Exporter.qdq_layer`).
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import UnsupportedError
from .onnx_load import elem_type

EXPORT_OPSET = 17
EXPORT_IR_VERSION = 9  # onnxruntime here accepts IR versions up to 13


def _ints(values):
    return np.array(values, np.int64)


def _slice(node, x):
    # An IR end of -1 with a negative step means "through index 0"; ONNX spells that INT64_MIN.
    ends = [np.iinfo(np.int64).min if e == -1 and s < 0 else e
            for e, s in zip(node.attrs["ends"], node.attrs["steps"])]
    return [_ints(node.attrs["starts"]), _ints(ends), _ints(node.attrs["axes"]),
            _ints(node.attrs["steps"])], {}


def _pad(node, x):
    value = np.array(node.attrs["value"], x.type.dtype)
    return [_ints(node.attrs["pads"]), value], {"mode": node.attrs["mode"]}


def _clip(node, x):
    # Infinite bounds are omitted (they cannot be cast to an integer x's dtype).
    bounds = [None if math.isinf(node.attrs[k]) else np.array(node.attrs[k], x.type.dtype)
              for k in ("min", "max")]
    return bounds, {}


def _resize(node, x):
    attrs = {k: v for k, v in node.attrs.items() if k not in ("scales", "sizes", "roi")}
    scales, sizes = node.attrs["scales"], node.attrs["sizes"]
    roi = np.array(node.attrs["roi"], np.float32) if node.attrs["roi"] else None
    # Sizes reproduce the IR exactly when the IR scales are sizes/shape; otherwise give scales.
    if all(s == o / i for s, o, i in zip(scales, sizes, x.type.shape)):
        return [roi, None, _ints(sizes)], attrs
    return [roi, np.array(scales, np.float32)], attrs


def _avg_pool(node, x):
    if tuple(node.attrs["dilations"]) != (1, 1):
        raise _needs_newer_opset(node, "dilations")
    return [], {k: v for k, v in node.attrs.items() if k != "dilations"}


# (op, attribute, value) forms ONNX only has from opset 19 on.
_OPSET_19_FORMS = {("Resize", "coordinate_transformation_mode", "half_pixel_symmetric"),
                   ("Pad", "mode", "wrap")}


def _needs_newer_opset(node, what: str) -> UnsupportedError:
    return UnsupportedError(f"node {node.name} ({node.op}): {what} needs ONNX opset 19; export "
                            f"targets opset {EXPORT_OPSET}",
                            items=[(node.op, f"ai.onnx:{EXPORT_OPSET}", node.name, what)])


# IR op -> fn(node, first input) -> (extra tensor inputs (None = omitted), ONNX attributes).
_SPECIAL = {
    "Reshape": lambda node, x: ([_ints(node.attrs["shape"])], {}),
    "Split": lambda node, x: ([_ints(node.attrs["split"])], {"axis": node.attrs["axis"]}),
    "ReduceSum": lambda node, x: ([_ints(node.attrs["axes"])], {"keepdims": node.attrs["keepdims"]}),
    "Expand": lambda node, x: ([_ints(node.attrs["shape"])], {}),
    "Tile": lambda node, x: ([_ints(node.attrs["repeats"])], {}),
    "Cast": lambda node, x: ([], {"to": elem_type(node.attrs["to"])}),
    "Slice": _slice, "Pad": _pad, "Clip": _clip, "Resize": _resize, "AveragePool": _avg_pool,
}


def export_model(graph) -> onnx.ModelProto:
    """The IR graph as an ONNX model that ONNX Runtime computes identically.

    Args:
        graph: an ir.Graph.
    Returns:
        an onnx.ModelProto (opset 17, IR version 9) passing onnx.checker.check_model.
    """
    exporter = _Exporter({v.name for v in graph.inputs} | {v.name for v in graph.constants}
                         | {v.name for n in graph.nodes for v in n.outputs} | {n.name for n in graph.nodes})
    output_names = {v.name for v in graph.outputs}
    nodes = [exporter.constant_node(v) for v in graph.constants if v.name in output_names]
    for node in graph.nodes:
        nodes.extend(exporter.nodes(node))
    onnx_graph = helper.make_graph(
        nodes, graph.name, [_value_info(v) for v in graph.inputs],
        [_value_info(v) for v in graph.outputs], initializer=exporter.initializers)
    return helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", EXPORT_OPSET)],
                             ir_version=EXPORT_IR_VERSION, producer_name="nnforge")


class _Exporter:
    def __init__(self, taken_names: set):
        self.initializers = []
        self._initialized = set()
        self._taken = set(taken_names)

    def fresh_name(self, base: str) -> str:
        name, i = base, 0
        while name in self._taken:
            i += 1
            name = f"{base}_{i}"
        self._taken.add(name)
        return name

    def nodes(self, node) -> list:
        """The ONNX nodes of one IR node: a Conv with a fused residual and activation is Conv,
        then Add of the residual, then the activation op (Relu6 as Clip(0, 6))."""
        if node.op in ("QConv", "QMatMul"):
            return self.qdq_layer(node)
        activation = node.attrs.get("activation", "") if node.op == "Conv" else ""
        residual = node.inputs[3] if node.op == "Conv" and len(node.inputs) > 3 else None
        onnx_node = self.node(node)
        if node.op == "Conv":
            del onnx_node.attribute[[a.name for a in onnx_node.attribute].index("activation")]
            del onnx_node.input[3:]
        out, nodes = onnx_node.output[0], [onnx_node]
        if residual is not None:
            nodes.append(helper.make_node("Add", [self.fresh_name(f"{out}_linear"), self.input_name(residual)],
                                          [out], name=self.fresh_name(f"{node.name}_residual")))
        if activation:
            inputs = [self.fresh_name(f"{out}_linear")]
            if activation == "Relu6":
                inputs += [self.array_name(np.array(v, np.float32), self.fresh_name(f"{node.name}_{k}"))
                           for k, v in (("min", 0.0), ("max", 6.0))]
            nodes.append(helper.make_node("Clip" if activation == "Relu6" else activation, inputs, [out],
                                          name=self.fresh_name(f"{node.name}_{activation.lower()}")))
        for producer, consumer in zip(nodes, nodes[1:]):  # chain: each op reads the one before
            producer.output[0] = consumer.input[0]
        return nodes

    def qdq_layer(self, node) -> list:
        """QConv / QMatMul as the QDQ pattern ONNX Runtime fuses back into an integer layer: x
        dequantized with scale 1 and its zero point, the int8 weights and int32 bias with the
        requantization factors multiplier / 2**shift as their (per-channel) scales, the float
        Conv / MatMul (+ bias Add, + the residual dequantized by its factor and added, + Relu),
        then QuantizeLinear with scale 1 and the output zero point. It computes
        round(acc * factor (+ residual)) + out_zero_point: our numbers to 1 LSB (ties, and the
        residual QConv's two roundings)."""
        a, (x, w), nodes = node.attrs, node.inputs[:2], []
        axis = 0 if node.op == "QConv" else 1
        factors = np.broadcast_to(np.array(a["multiplier"], np.float64) / 2.0 ** np.array(a["shift"], np.float64),
                                  (w.type.shape[axis],)).astype(np.float32)

        def const(array, what):
            return self.array_name(np.asarray(array), self.fresh_name(f"{node.name}_{what}"))

        def add(op, inputs, what, **attrs):
            out = self.fresh_name(f"{node.name}_{what}")
            nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
            return out

        one = const(np.float32(1), "one")
        inputs = [add("DequantizeLinear", [self.input_name(x), one, const(np.array(a["x_zero_point"], x.type.dtype),
                                                                           "x_zero_point")], "x"),
                  add("DequantizeLinear", [self.input_name(w), const(factors, "w_scale"),
                                           const(np.zeros(len(factors), np.int8), "w_zero_point")], "w", axis=axis)]
        if len(node.inputs) > 2:
            inputs.append(add("DequantizeLinear", [self.input_name(node.inputs[2]), const(factors, "b_scale"),
                                                   const(np.zeros(len(factors), np.int32), "b_zero_point")], "b", axis=0))
        if node.op == "QConv":
            y = add("Conv", inputs, "conv", group=a["group"], **{k: list(a[k]) for k in ("strides", "pads", "dilations")})
            if len(node.inputs) > 3:  # the residual in output steps: scale residual_multiplier / 2**residual_shift
                r, scale = node.inputs[3], np.float32(a["residual_multiplier"] / 2.0 ** a["residual_shift"])
                r_zero_point = const(np.array(a["residual_zero_point"], r.type.dtype), "r_zero_point")
                r = add("DequantizeLinear", [self.input_name(r), const(scale, "r_scale"), r_zero_point], "r")
                y = add("Add", [y, r], "residual")
        else:
            y = add("MatMul", inputs[:2], "matmul")
            y = add("Add", [y, inputs[2]], "bias") if len(inputs) > 2 else y
        if a["activation"] == "Relu":
            y = add("Relu", [y], "relu")
        zero_point = const(np.array(a["out_zero_point"], a["out_dtype"]), "out_zero_point")
        nodes.append(helper.make_node("QuantizeLinear", [y, one, zero_point], [node.outputs[0].name], name=node.name))
        return nodes

    def constant_node(self, value):
        """A Constant node, for a constant that is a graph output (outputs need a producer)."""
        self._initialized.add(value.name)
        return helper.make_node("Constant", [], [value.name], name=f"{value.name}_constant",
                                value=numpy_helper.from_array(np.asarray(value.data), value.name))

    def node(self, node):
        for op, key, value in _OPSET_19_FORMS:
            if node.op == op and node.attrs.get(key) == value:
                raise _needs_newer_opset(node, f"{key}={value!r}")
        x = node.inputs[0] if node.inputs else None
        special = _SPECIAL.get(node.op)
        extra, attrs = special(node, x) if special else ([], dict(node.attrs))
        names = [self.input_name(v) for v in node.inputs]
        names += [self.array_name(a, f"{node.name}_in{i}") if a is not None else ""
                  for i, a in enumerate(extra, start=len(names))]
        while names and names[-1] == "":
            names.pop()
        # helper cannot type an empty list attribute; ONNX reads a missing one the same way here
        attrs = {k: v for k, v in attrs.items() if not (isinstance(v, (list, tuple)) and not v)}
        return helper.make_node(node.op, names, [v.name for v in node.outputs], name=node.name,
                                **attrs)

    def input_name(self, value) -> str:
        if value.is_constant and value.name not in self._initialized:
            self._initialized.add(value.name)
            self.initializers.append(numpy_helper.from_array(np.asarray(value.data), value.name))
        return value.name

    def array_name(self, array, name: str) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name


def _value_info(value):
    return helper.make_tensor_value_info(value.name, elem_type(value.type.dtype), value.type.shape)
