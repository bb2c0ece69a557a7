"""The float -> int8 graph rewrite behind the `quantize` pass.

One walk over the float graph in topological order builds a new graph in which every value
may have a float version, an int8 "twin" (value + QParams), or both, each made on demand:

- Conv (with its fused Relu/Relu6), Gemm and MatMul with constant weights become QConv /
  QMatMul on the twin of their input (a QuantizeLinear is inserted only where the input has
  no twin); a following Relu is fused into the QConv/QMatMul, a following bias Add into
  QMatMul. A Conv with a fused residual whose value has a twin (and no activation, Relu or
  Relu6) becomes one QConv that adds the residual's twin in its requantization (ir/ops/quant.py);
  one with another residual or activation becomes a QConv whose output is dequantized for the
  float Add and activation (calibrated before them, see calibrate.py);
- ops that are exact on the integers keep the twin: MaxPool, Reshape, Transpose, Relu and
  Clip (as an integer Clip), and Concat of twins with equal QParams;
- every other op reads float versions, made by a DequantizeLinear of the twin the first time
  one is needed, so consecutive int8 layers pass int8 tensors to each other directly.

The output of a QConv/QMatMul whose only user is a Relu/Clip is quantized with the range of
that user's output (everything outside it is clipped anyway), which spends the 256 levels on
what survives, e.g. [0, 6] for ReLU6; one whose only user is a Concat takes the Concat's
range, so that the Concat's inputs share QParams and it stays int8.
"""
from __future__ import annotations

import numpy as np

from ...errors import NnforgeError
from ...ir import Graph
from ..rewrite import _keep_output_names
from .calibrate import INTEGER_ACTIVATIONS, has_float_epilogue, linear_name
from .qparams import QParams, activation_qparams, integer_layer, residual_requant

# a layer's only user whose output range the layer's output takes (see the module docstring)
RANGE_FROM_USER = ("Relu", "Clip", "Concat")
# a Conv's fused activation as the float op that follows a QConv when it cannot be fused into it
FLOAT_ACTIVATIONS = {"": None, "Relu": ("Relu", {}), "Relu6": ("Clip", {"min": 0.0, "max": 6.0}),
                     "HardSwish": ("HardSwish", {}), "Sigmoid": ("Sigmoid", {})}


def layer_weights(node):
    """(op, w, w_axis, bias, attrs) of the QConv/QMatMul computing `node`'s linear part (a Conv
    before any fused residual/activation, a Gemm, a MatMul) from a float32 input with constant
    float weights and bias; None when it has no such form."""
    x = node.inputs[0] if node.inputs else None
    if x is None or x.is_constant or x.type.dtype != "float32" or node.op not in ("Conv", "Gemm", "MatMul"):
        return None
    w, b = node.inputs[1], node.inputs[2] if len(node.inputs) > 2 and node.op != "MatMul" else None
    if not w.is_constant or (b is not None and not b.is_constant):
        return None
    if node.op == "Conv":
        attrs = {k: node.attrs[k] for k in ("strides", "pads", "dilations", "group")}
        return "QConv", w.data, 0, None if b is None else b.data, attrs
    if node.op == "MatMul":
        return ("QMatMul", w.data, 1, None, {}) if w.type.rank == 2 and x.type.rank >= 2 else None
    n = node.outputs[0].type.shape[1]
    if node.attrs["transA"] or (b is not None and b.type.shape not in ((), (1,), (n,), (1, n))):
        return None
    weights = (w.data.T if node.attrs["transB"] else w.data) * np.float32(node.attrs["alpha"])
    bias = None if b is None else np.broadcast_to(b.data.reshape(-1) * np.float32(node.attrs["beta"]), (n,))
    return "QMatMul", weights, 1, bias, {}


class Quantizer:
    """Builds the quantized graph of `graph`.

    Args:
        graph: the float ir.Graph (not modified).
        ranges: value name -> calibrated (lo, hi) of every float activation.
        power_of_two: power-of-two scales, int8 symmetric activations (see qparams).
        weight_bits: 8, or 7 for kernels that need headroom in int16 pair sums.
        int8_outputs: quantize the layers whose output is a graph output too (default). With
            False they keep fp32 weights: their output leaves the int8 region anyway, and 8 bits
            over a range calibrated on few feeds can saturate final logits on new data.
        int8_residuals: add a Conv's residual inside its QConv when the residual has a twin
            (default); False runs every residual Add in float (for comparisons). Not with
            power_of_two: its int8 scales, rounded up to powers of two, leave a skip path kept in
            int8 too few levels over many blocks (ShuffleNet: cosine 0.986 vs 0.9995 with float
            Adds), and VTA, what that mode is for, runs no residual QConv.
    """

    def __init__(self, graph, ranges: dict, power_of_two: bool = False, weight_bits: int = 8,
                 int8_outputs: bool = True, int8_residuals: bool = True):
        self.src, self.ranges = graph, ranges
        self.power_of_two, self.weight_bits, self.int8_outputs = power_of_two, weight_bits, int8_outputs
        self.int8_residuals = int8_residuals and not power_of_two
        self.g = Graph(graph.name)
        self.floats: dict = {}   # source value name -> float Value in the new graph
        self.twins: dict = {}    # source value name -> (int8/uint8 Value, QParams)
        self.aliases: dict = {}  # source value name -> source value it equals (fused users)
        self.users = graph.users()
        self.graph_outputs = {v.name for v in graph.outputs}

    def run(self) -> Graph:
        for v in self.src.inputs:
            self.floats[v.name] = self.g.add_input(v.name, v.type)
        for node in self.src.nodes:
            if any(v.name in self.aliases for v in node.outputs):
                continue  # fused into its producer
            handler = getattr(self, f"_{node.op}", None)
            if handler is None or not handler(node):
                self._float_node(node)
        self.g.set_outputs([self.float_of(v) for v in self.src.outputs])
        self.g.remove_dead()
        return _keep_output_names(self.src, self.g)

    # -- float and int8 versions of source values -----------------------------------
    def resolve(self, v):
        while v.name in self.aliases:
            v = self.aliases[v.name]
        return v

    def float_of(self, v):
        v = self.resolve(v)
        if v.is_constant:
            if v.name not in self.floats:
                self.floats[v.name] = self.g.constant(v.data, v.name)
            return self.floats[v.name]
        if v.name not in self.floats:
            self.floats[v.name] = self.float_of_twin(*self.twins[v.name], v.name)
        return self.floats[v.name]

    def float_of_twin(self, q, p: QParams, name: str):
        return self._emit("DequantizeLinear", [q, *self._qparam_consts(p, name)], f"{name}_dequant")

    def twin_of(self, v):
        """(int Value, QParams) of source value v, quantizing its float version if needed."""
        v = self.resolve(v)
        if v.name not in self.twins:
            p = self.qparams(v.name)
            q = self._emit("QuantizeLinear", [self.float_of(v), *self._qparam_consts(p, v.name)],
                           f"{v.name}_quant")
            self.twins[v.name] = (q, p)
        return self.twins[v.name]

    def qparams(self, name: str) -> QParams:
        if name not in self.ranges:
            raise NnforgeError(f"quantize: value %{name} was not seen during calibration "
                               f"(not a float activation?)")
        return activation_qparams(*self.ranges[name], self.power_of_two)

    def _qparam_consts(self, p: QParams, base: str) -> list:
        return [self.g.constant(np.array(p.scale, np.float32), f"{base}_scale"),
                self.g.constant(np.array(p.zero_point, p.dtype), f"{base}_zero_point")]

    def _emit(self, op, inputs, name, attrs=None):
        return self.g.add_node(op, inputs, attrs or {}, name=name)[0]

    def _float_node(self, node):
        outs = self.g.add_node(node.op, [self.float_of(v) for v in node.inputs], node.attrs,
                               name=node.name, output_names=[v.name for v in node.outputs])
        for v, new in zip(node.outputs, outs):
            self.floats[v.name] = new

    # -- integer layers -----------------------------------------------------------
    def _keeps_float(self, node) -> bool:
        return not self.int8_outputs and node.outputs[0].name in self.graph_outputs

    def _Conv(self, node) -> bool:
        layer, activation = layer_weights(node), node.attrs["activation"]
        if layer is None or activation not in FLOAT_ACTIVATIONS or self._keeps_float(node):
            return False
        op, w, w_axis, bias, attrs = layer
        residual = self._residual_twin(node)
        if not has_float_epilogue(node) or residual is not None:
            self._integer_layer(node, op, w, w_axis, bias, attrs, activation, residual=residual)
            return True
        # a fused residual or a non-clipping activation stays float: QConv -> Dequantize -> op(s)
        q, p = self._integer_layer(node, op, w, w_axis, bias, attrs, "", linear_name(node))
        y = self.float_of_twin(q, p, f"{node.name}_linear")
        if len(node.inputs) > 3:
            y = self._emit("Add", [y, self.float_of(node.inputs[3])], f"{node.name}_residual")
        if activation:
            act_op, act_attrs = FLOAT_ACTIVATIONS[activation]
            y = self._emit(act_op, [y], f"{node.name}_{activation.lower()}", act_attrs)
        self.floats[node.outputs[0].name] = y
        return True

    def _residual_twin(self, node):
        """The twin (int Value, QParams) of a Conv's fused residual when the QConv can add it
        itself (int8_residuals, an integer activation, the residual has a twin); else None."""
        if len(node.inputs) < 4 or not self.int8_residuals or node.attrs["activation"] not in INTEGER_ACTIVATIONS:
            return None
        return self.twins.get(self.resolve(node.inputs[3]).name)

    def _Gemm(self, node) -> bool:
        layer = layer_weights(node)
        if layer is None or self._keeps_float(node):
            return False
        op, w, w_axis, bias, attrs = layer
        if node.op == "MatMul":  # a bias Add right after it joins the layer
            add = self._sole_user(node, ("Add",))
            other = add and (add.inputs[1] if add.inputs[0] is node.outputs[0] else add.inputs[0])
            if add is not None and other.is_constant and other.type.shape in ((w.shape[1],), (1, w.shape[1])):
                bias = other.data.reshape(-1)
                self.aliases[add.outputs[0].name] = node.outputs[0]
        self._integer_layer(node, op, w, w_axis, bias, attrs, "")
        return True

    _MatMul = _Gemm

    def _integer_layer(self, node, op, w, w_axis, bias, attrs, activation, out_name=None, residual=None):
        """Emit QConv/QMatMul for `node` (w, bias: float arrays; see layer_weights) and
        return its (int Value, QParams); registered as the twin of node's output unless
        `out_name` (the calibrated value the output stands for) is given. `residual`: the
        (int Value, QParams) a QConv adds before its activation."""
        out = node.outputs[0]
        relu = self._sole_user(node, ("Relu",)) if out_name is None else None
        if relu is not None:
            self.aliases[relu.outputs[0].name] = out
            activation = "Relu"
        user = self._sole_user(node, RANGE_FROM_USER) if out_name is None else None
        out_p = self.qparams(out_name or (user.outputs[0].name if user is not None else out.name))
        qx, xp = self.twin_of(node.inputs[0])
        wq, bq, requant, out_p = integer_layer(w, w_axis, bias, xp, out_p, self.power_of_two, self.weight_bits)
        inputs = [qx, self.g.constant(wq, f"{node.name}_w")]
        if residual is not None:  # the residual input comes after the bias: a zero bias when there is none
            bq = np.zeros(len(wq), np.int32) if bq is None else bq
            requant = {**requant, **residual_requant(residual[1], out_p)}
        if bq is not None:
            inputs.append(self.g.constant(bq, f"{node.name}_b"))
        if residual is not None:
            inputs.append(residual[0])
        attrs = {**attrs, **requant, "activation": "Relu" if activation in ("Relu", "Relu6") else ""}
        q = self._emit(op, inputs, node.name, attrs)
        if activation == "Relu6":
            q = self._int_clip(q, out_p, 0.0, 6.0, f"{node.name}_relu6")
        if out_name is None:
            self.twins[out.name] = (q, out_p)
        return q, out_p

    def _sole_user(self, node, ops):
        """The one user of node's output when it is one of `ops` and the output is not a graph
        output; else None."""
        out = node.outputs[0]
        users = self.users.get(out.name, [])
        if len(users) == 1 and users[0].op in ops and out.name not in self.graph_outputs:
            return users[0]
        return None

    # -- ops exact on the integers ------------------------------------------------
    def _passthrough(self, node, attrs) -> bool:
        x = self.resolve(node.inputs[0])
        if x.name not in self.twins:
            return False
        q, p = self.twins[x.name]
        self.twins[node.outputs[0].name] = (self._emit(node.op, [q], node.name, attrs), p)
        return True

    def _MaxPool(self, node) -> bool:
        return self._passthrough(node, node.attrs)

    _Reshape = _Transpose = _MaxPool

    def _Relu(self, node) -> bool:
        return self._clip(node, 0.0, np.inf)

    def _Clip(self, node) -> bool:
        return self._clip(node, node.attrs["min"], node.attrs["max"])

    def _clip(self, node, lo, hi) -> bool:
        x = self.resolve(node.inputs[0])
        if x.name not in self.twins:
            return False
        q, p = self.twins[x.name]
        self.twins[node.outputs[0].name] = (self._int_clip(q, p, lo, hi, node.name), p)
        return True

    def _int_clip(self, q, p: QParams, lo: float, hi: float, name: str):
        """q clipped to the levels of [lo, hi] (exact: clipping commutes with rounding); q itself
        when its own saturation already does that."""
        info = np.iinfo(p.dtype)
        q_lo = max(p.level(lo), info.min) if np.isfinite(lo) else info.min
        q_hi = min(p.level(hi), info.max) if np.isfinite(hi) else info.max
        if (q_lo, q_hi) == (info.min, info.max):
            return q
        return self._emit("Clip", [q], name, {"min": float(q_lo), "max": float(q_hi)})

    def _Concat(self, node) -> bool:
        srcs = [self.resolve(v) for v in node.inputs]
        if not all(v.name in self.twins for v in srcs) or len({self.twins[v.name][1] for v in srcs}) != 1:
            return False
        p = self.twins[srcs[0].name][1]
        self.twins[node.outputs[0].name] = (
            self._emit("Concat", [self.twins[v.name][0] for v in srcs], node.name, node.attrs), p)
        return True
