"""OnnxNode: what a converter sees of one ONNX node, and the emitter that folds constants.

A converter is `fn(node: OnnxNode) -> list[Value | None]` (one entry per ONNX output it
defines). It reads inputs and attributes through this class and builds IR with
`node.emit(...)`, which evaluates the op with the registry's reference whenever
all its inputs are constants, so shape arithmetic disappears at import.
"""
from __future__ import annotations

import numpy as np
from onnx import helper

from ..errors import ModelError, NnforgeError, StaticInputError, UnsupportedError
from ..ir import get_op
from .onnx_load import tensor_to_array


class OnnxNode:
    """One ONNX node under conversion.

    Args:
        proto: the NodeProto.
        name: the IR name for its nodes (unique, never an ONNX value name).
        opset: the default-domain opset version of the model.
        inputs: IR Values for each ONNX input (None where the input is omitted).
        importer: the importer (gives the graph, and fresh names).
        outputs: the IR names of the ONNX outputs ("" where unused).
    """

    def __init__(self, proto, name: str, opset: int, inputs: list, importer, outputs: list):
        self.op = proto.op_type
        self.name = name
        self.opset = opset
        self.inputs = inputs
        self.outputs = outputs
        self.graph = importer.graph
        self._importer = importer
        self.attrs = {a.name: _attribute_value(a) for a in proto.attribute}

    # -- reading ------------------------------------------------------------
    def attr(self, key: str, default=None):
        """An attribute's value (str for strings, list for repeated), or `default`."""
        return self.attrs.get(key, default)

    def tensor_attr(self, key: str, default=None):
        """A TENSOR attribute as a numpy array, or `default`."""
        value = self.attrs.get(key)
        if value is None:
            return default
        return tensor_to_array(value, f"node {self.name} ({self.op}) attribute {key}")

    def input(self, i: int):
        """The IR Value of input i, or None when omitted."""
        return self.inputs[i] if i < len(self.inputs) else None

    def present_inputs(self) -> list:
        """The Values of the inputs that are not omitted, in order."""
        return [v for v in self.inputs if v is not None]

    def shape(self, i: int = 0) -> tuple:
        """The static shape of input i."""
        return self.inputs[i].type.shape

    def static(self, i: int, what: str):
        """The constant array of input i (None when omitted).

        Raises UnsupportedError when the input is computed at run time: the IR needs it
        as an attribute.
        """
        value = self.input(i)
        if value is None:
            return None
        if not value.is_constant:
            reason = (f"input {i} ({what}, %{value.name}) must be a constant known at import "
                      f"time, but it is computed at run time")
            raise StaticInputError(f"node {self.name} ({self.op}, opset {self.opset}): {reason}",
                                   value.name,
                                   items=[(self.op, f"ai.onnx:{self.opset}", self.name, reason)])
        return value.data

    def static_ints(self, i: int, what: str):
        """Input i as a list of Python ints, or None when omitted."""
        data = self.static(i, what)
        return None if data is None else [int(v) for v in np.asarray(data).reshape(-1)]

    def axis(self, axis: int, rank: int) -> int:
        """`axis` made non-negative for a tensor of `rank`; ModelError when out of range."""
        if not -rank <= axis < max(rank, 1):
            raise self.model_error(f"axis {axis} is out of range for rank {rank}")
        return axis % rank if rank else 0

    def unsupported(self, reason: str) -> UnsupportedError:
        """The error to raise for an attribute value or form nnforge does not support."""
        return UnsupportedError(f"node {self.name} ({self.op}, opset {self.opset}): {reason}",
                                items=[(self.op, f"ai.onnx:{self.opset}", self.name, reason)])

    def model_error(self, reason: str) -> ModelError:
        """The error to raise when the node itself is inconsistent."""
        return ModelError(f"node {self.name} ({self.op}): {reason}")

    # -- building -----------------------------------------------------------
    def emit(self, op: str, inputs: list, attrs: dict | None = None, final: bool = True,
             first_output: int = 0) -> list:
        """Add IR op `op`, or fold it into constants when every input is constant.

        Args:
            op: the IR op.
            inputs: IR Values.
            attrs: normalized attributes (see ir/OPS.md).
            final: True when its outputs are the ONNX node's outputs (they then take the
                ONNX names); False for helper nodes of a multi-node expansion.
            first_output: the ONNX output its first output stands for, when final.
        Returns:
            the output Values.
        """
        opdef = get_op(op)
        attrs = opdef.check_attrs(attrs or {}, self.name)
        types = opdef.infer_types([v.type for v in inputs], attrs, self.name)
        names = self._output_names(op, len(types), final, first_output)
        if all(v.is_constant for v in inputs):
            try:
                arrays = opdef.run([v.data for v in inputs], attrs)
            except NnforgeError:
                raise
            except Exception as e:  # noqa: BLE001 (a reference failing on a constant)
                raise self.model_error(f"folding {op} on constants failed: {e}") from e
            return [self.graph.constant(np.asarray(a, dtype=t.dtype).reshape(t.shape), n)
                    for a, t, n in zip(arrays, types, names)]
        return self.graph.add_node(op, inputs, attrs, name=self.name, output_names=names)

    def constant(self, array, i: int = 0):
        """A constant Value standing for ONNX output i."""
        return self.graph.constant(np.asarray(array), self._output_names("const", 1, True, i)[0])

    def helper_constant(self, array, what: str):
        """A constant Value for an intermediate of a multi-node expansion, named after `what`."""
        return self.graph.constant(np.asarray(array), self._importer.fresh_name(f"{self.name}_{what}"))

    def output_used(self, i: int) -> bool:
        """Whether ONNX output i exists and is read (by a node, or as a graph output)."""
        return i < len(self.outputs) and self.outputs[i] in self._importer.used

    def _output_names(self, op: str, count: int, final: bool, first: int = 0) -> list:
        names = []
        for i in range(first, first + count):
            onnx_name = self.outputs[i] if final and i < len(self.outputs) else ""
            helper_name = f"{self.outputs[0] or self.name}_{op.lower()}"
            names.append(onnx_name or self._importer.fresh_name(helper_name))
        return names


def _attribute_value(attr):
    """An AttributeProto as plain Python: str for strings, lists for repeated fields."""
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list):
        return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in value]
    return value
