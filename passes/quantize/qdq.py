"""The `fold-qdq` pass: the QDQ patterns of an imported quantized model -> integer layers.

A float Conv / Gemm / MatMul with constant weights whose input is a per-tensor
DequantizeLinear of an int8/uint8 tensor, and whose output (or that of a Relu right after it)
is read only by a per-tensor QuantizeLinear, becomes one QConv / QMatMul from the
DequantizeLinear's input to the QuantizeLinear's output: what ONNX Runtime does with such a
model. The weights, dequantized to float at import, are quantized again per output channel
(symmetric: the original integers wherever a channel's largest weight was +-127, as
onnxruntime.quantization makes them) and the bias in units of x_scale * w_scale.
"""
from __future__ import annotations

from ..manager import register_pass
from .qparams import QParams, integer_layer
from .rewrite import layer_weights


def _per_tensor_qparams(node) -> QParams | None:
    """QParams of a QuantizeLinear/DequantizeLinear with constant per-tensor scale/zero point."""
    scale, zp = node.inputs[1], node.inputs[2] if len(node.inputs) > 2 else None
    if not scale.is_constant or scale.type.numel != 1 or (zp is not None and not zp.is_constant):
        return None
    return QParams(float(scale.data.reshape(())), int(zp.data.reshape(())) if zp is not None else 0,
                   zp.type.dtype if zp is not None else "uint8")


def _sole_user(value, users, outputs, op):
    found = users.get(value.name, [])
    return found[0] if len(found) == 1 and found[0].op == op and value.name not in outputs else None


def _match(node, users, outputs):
    """(DequantizeLinear, QuantizeLinear, activation) around an integer-able layer, or None."""
    if len(node.inputs) > 3:  # a fused residual has no integer form here
        return None
    dq = node.inputs[0].producer
    if dq is None or dq.op != "DequantizeLinear" or dq.inputs[0].type.dtype not in ("int8", "uint8"):
        return None
    activation = node.attrs.get("activation", "")
    out = node.outputs[0]
    relu = _sole_user(out, users, outputs, "Relu") if not activation else None
    if relu is not None:
        activation, out = "Relu", relu.outputs[0]
    quant = _sole_user(out, users, outputs, "QuantizeLinear")
    if quant is None or activation not in ("", "Relu"):
        return None
    if _per_tensor_qparams(dq) is None or _per_tensor_qparams(quant) is None:
        return None
    return dq, quant, activation


@register_pass("fold-qdq")
def fold_qdq(graph):
    """DequantizeLinear -> Conv/Gemm/MatMul (-> Relu) -> QuantizeLinear into QConv/QMatMul."""
    g = graph.copy()
    users, outputs = g.users(), {v.name for v in g.outputs}
    for node in list(g.nodes):
        layer = layer_weights(node)
        match = _match(node, users, outputs) if layer is not None else None
        if match is None:
            continue
        (dq, quant, activation), (op, w, w_axis, bias, attrs) = match, layer
        wq, bq, requant, _ = integer_layer(w, w_axis, bias, _per_tensor_qparams(dq), _per_tensor_qparams(quant),
                                           power_of_two=False)
        inputs = [dq.inputs[0], g.constant(wq, f"{node.name}_w")] + ([g.constant(bq, f"{node.name}_b")]
                                                                    if bq is not None else [])
        (y,) = g.add_node(op, inputs, {**attrs, **requant, "activation": activation}, name=node.name)
        g.replace_all_uses(quant.outputs[0], y)
    g.toposort()  # the new layers were appended last; remove_dead needs topological order
    g.remove_dead()
    return g
