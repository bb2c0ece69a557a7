"""Reading ONNX files: parse, version checks, dtypes and tensors as numpy arrays.

Everything here turns onnx/protobuf/numpy failures into ModelError or
UnsupportedError, so the importer never leaks a raw traceback to the user.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..errors import ModelError, UnsupportedError
from .onnx_graph import walk_nodes

MIN_OPSET = 7
MAX_TESTED_OPSET = 21
MIN_IR_VERSION = 3
DEFAULT_DOMAINS = ("", "ai.onnx")

# TensorProto element type -> numpy dtype name, for the dtypes the IR supports.
_DTYPES = {
    TensorProto.FLOAT: "float32", TensorProto.DOUBLE: "float64", TensorProto.FLOAT16: "float16",
    TensorProto.INT8: "int8", TensorProto.INT16: "int16", TensorProto.INT32: "int32",
    TensorProto.INT64: "int64", TensorProto.UINT8: "uint8", TensorProto.UINT16: "uint16",
    TensorProto.UINT32: "uint32", TensorProto.UINT64: "uint64", TensorProto.BOOL: "bool",
}
_ELEM_TYPES = {name: code for code, name in _DTYPES.items()}


def load_model(model) -> tuple[onnx.ModelProto, str]:
    """Parse `model` into a ModelProto.

    Args:
        model: an onnx.ModelProto, a file path (str or os.PathLike), or the serialized bytes.
    Returns:
        (the ModelProto, a label naming where it came from, for error messages).
    """
    if isinstance(model, onnx.ModelProto):
        proto, label = model, "<ModelProto>"
    elif isinstance(model, (bytes, bytearray, memoryview)):
        proto, label = _parse(bytes(model), "<bytes>"), "<bytes>"
    elif isinstance(model, (str, os.PathLike)):
        label = os.fspath(model)
        if not os.path.isfile(label):
            raise ModelError(f"ONNX model file {label!r} does not exist")
        with open(label, "rb") as f:
            proto = _parse(f.read(), label)
        try:  # weights stored next to the model file
            onnx.external_data_helper.load_external_data_for_model(proto, os.path.dirname(label))
        except Exception as e:  # noqa: BLE001 (any failure is a broken model)
            raise ModelError(f"{label}: cannot load external tensor data: {e}") from e
    else:
        raise ModelError(f"expected an onnx.ModelProto, a path or bytes, got {type(model).__name__}")
    if not proto.HasField("graph") or proto.ir_version <= 0:
        raise ModelError(f"{label} is not an ONNX model (no graph or no IR version)")
    return proto, label


def _parse(data: bytes, label: str) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:  # noqa: BLE001 (protobuf raises several types)
        raise ModelError(f"{label} is not a readable ONNX model (malformed or truncated): {e}") from e
    return proto


def default_opset(proto: onnx.ModelProto, label: str) -> int:
    """The opset of the default ONNX domain, after checking IR and opset versions.

    Opsets above 21 (the newest we test) are accepted with a warning up to the newest
    this onnx package knows: for the supported ops they only add dtypes. An opset below 7
    is accepted when every op the model uses has the same definition there as at opset 7,
    and is then imported as opset 7.

    Args:
        proto: the model.
        label: where it came from, for messages.
    Returns:
        the default-domain opset version the importer applies (7 for an older model).
    """
    if not MIN_IR_VERSION <= proto.ir_version <= onnx.IR_VERSION:
        raise ModelError(f"{label}: ONNX IR version {proto.ir_version} is not supported "
                         f"(supported: {MIN_IR_VERSION}..{onnx.IR_VERSION})")
    versions = [o.version for o in proto.opset_import if o.domain in DEFAULT_DOMAINS]
    if not versions:
        raise ModelError(f"{label}: the model imports no default ONNX opset")
    opset, newest = max(versions), onnx.defs.onnx_opset_version()
    if opset < MIN_OPSET:
        _check_same_as_min_opset(proto, label, opset)
        return MIN_OPSET
    if opset > newest:
        raise ModelError(f"{label}: ONNX opset {opset} is not supported "
                         f"(supported: {MIN_OPSET}..{MAX_TESTED_OPSET}, {newest} with a warning)")
    if opset > MAX_TESTED_OPSET:
        warnings.warn(f"{label}: ONNX opset {opset} is newer than {MAX_TESTED_OPSET}, the newest "
                      f"nnforge is tested with; importing it with opset-{MAX_TESTED_OPSET} semantics",
                      stacklevel=3)
    return opset


def _check_same_as_min_opset(proto: onnx.ModelProto, label: str, opset: int):
    """ModelError naming the first default-domain op whose definition at `opset` is not
    the one in force at MIN_OPSET (the oldest semantics the converters implement)."""
    for op in dict.fromkeys(n.op_type for n in walk_nodes(proto.graph) if n.domain in DEFAULT_DOMAINS):
        try:
            same = onnx.defs.get_schema(op, max_inclusive_version=opset).since_version == \
                onnx.defs.get_schema(op, max_inclusive_version=MIN_OPSET).since_version
        except onnx.defs.SchemaError:  # the op does not exist at one of the two opsets
            same = False
        if not same:
            raise ModelError(f"{label}: ONNX opset {opset} is not supported for op {op}: its "
                             f"definition there differs from opset {MIN_OPSET}'s (supported: "
                             f"{MIN_OPSET}..{MAX_TESTED_OPSET}, and older opsets whose ops did not "
                             f"change until {MIN_OPSET})")


def numpy_dtype(elem_type: int, what: str) -> str:
    """The numpy dtype name of an ONNX element type.

    Args:
        elem_type: a TensorProto.DataType value.
        what: names the tensor, for the error.
    Returns:
        the numpy dtype name; UnsupportedError for string, complex, bfloat16, float8...
    """
    if elem_type not in _DTYPES:
        kind = TensorProto.DataType.Name(elem_type) if elem_type in TensorProto.DataType.values() \
            else f"#{elem_type}"
        raise UnsupportedError(f"{what} has dtype {kind}, which nnforge does not support",
                               items=[("dtype", kind, what, "unsupported dtype")])
    return _DTYPES[elem_type]


def elem_type(dtype: str) -> int:
    """The TensorProto element type of a numpy dtype name (inverse of numpy_dtype)."""
    return _ELEM_TYPES[np.dtype(dtype).name]


def tensor_to_array(tensor: TensorProto, what: str) -> np.ndarray:
    """A TensorProto as a numpy array, checking its data size against its dims.

    Args:
        tensor: the tensor (initializer or attribute).
        what: names it for error messages.
    Returns:
        the numpy array.
    """
    dtype = numpy_dtype(tensor.data_type, what)
    try:
        array = numpy_helper.to_array(tensor)
    except ValueError as e:
        raise ModelError(f"{what}: its data size does not match its declared dims "
                         f"{list(tensor.dims)}") from e
    except Exception as e:  # noqa: BLE001 (external data, corrupt fields)
        raise ModelError(f"{what}: cannot read tensor data: {e}") from e
    if array.size != int(np.prod(tensor.dims, dtype=np.int64)):
        raise ModelError(f"{what}: its data size {array.size} does not match its declared dims "
                         f"{list(tensor.dims)}")
    return array.astype(dtype, copy=False)


def sparse_to_array(sparse: onnx.SparseTensorProto, what: str) -> np.ndarray:
    """A SparseTensorProto (Constant's sparse_value) as a dense numpy array."""
    values = tensor_to_array(sparse.values, what)
    indices = tensor_to_array(sparse.indices, what).astype(np.int64)
    dense = np.zeros(int(np.prod(sparse.dims, dtype=np.int64)), dtype=values.dtype)
    try:
        if indices.ndim == 2:  # [NNZ, rank] coordinates
            indices = np.ravel_multi_index(indices.T, tuple(sparse.dims))
        dense[indices] = values
    except (IndexError, ValueError) as e:
        raise ModelError(f"{what}: sparse indices do not fit dims {list(sparse.dims)}") from e
    return dense.reshape(tuple(sparse.dims))
