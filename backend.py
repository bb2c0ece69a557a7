"""nnforge as an `onnx.backend.base.Backend`, so ONNX's own backend-test machinery can drive it.

    import nnforge.backend as backend
    rep = backend.prepare(model)            # compiles for the CPU
    outputs = rep.run([x])                  # or a dict of name -> array

nnforge compiles static graphs. When a graph input is used where the IR needs a
compile-time value (a Reshape's shape, Slice's starts, Resize's scales...), `prepare`
cannot compile yet; the first `run` then compiles a specialization for the values of
those inputs (cached per value), as a JIT would.
"""
from __future__ import annotations

import numpy as np
from onnx import ModelProto, TensorProto, numpy_helper
from onnx.backend.base import Backend, BackendRep

from . import compile as _compile
from .errors import StaticInputError


def _with_initializers(model: ModelProto, values: dict) -> ModelProto:
    """A copy of `model` where the graph inputs in `values` become initializers."""
    m = ModelProto.FromString(model.SerializeToString())
    keep = [i for i in m.graph.input if i.name not in values]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    m.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), n) for n, v in values.items())
    return m


def as_array(value) -> np.ndarray:
    """A feed as a numpy array (ONNX's test data also passes TensorProtos)."""
    return numpy_helper.to_array(value) if isinstance(value, TensorProto) else np.asarray(value)


class NnforgeRep(BackendRep):
    """A compiled model (or, for models with run-time static inputs, its specializations)."""

    def __init__(self, model: ModelProto, input_shapes=None):
        self.model = model
        self.input_shapes = input_shapes
        self.names = [i.name for i in model.graph.input
                      if i.name not in {t.name for t in model.graph.initializer}]
        self.static: list = []  # graph inputs whose values must be known to compile
        self._compiled: dict = {}
        try:
            self._compiled[()] = _compile(model, input_shapes=input_shapes)
        except StaticInputError as e:
            if e.value not in self.names:
                raise
            self.static.append(e.value)

    def _specialize(self, feeds: dict):
        key = tuple((n, feeds[n].dtype.str, feeds[n].shape, feeds[n].tobytes()) for n in self.static)
        while key not in self._compiled:
            try:
                model = _with_initializers(self.model, {n: feeds[n] for n in self.static})
                self._compiled[key] = _compile(model, input_shapes=self.input_shapes)
            except StaticInputError as e:
                if e.value not in self.names or e.value in self.static:
                    raise
                self.static.append(e.value)
                key = tuple((n, feeds[n].dtype.str, feeds[n].shape, feeds[n].tobytes()) for n in self.static)
        return self._compiled[key]

    def run(self, inputs, **kwargs):
        if isinstance(inputs, dict):
            feeds = {k: as_array(v) for k, v in inputs.items()}
        else:
            inputs = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            feeds = {n: as_array(v) for n, v in zip(self.names, inputs)}
        compiled = self._specialize(feeds) if self.static else self._compiled[()]
        return tuple(compiled.run({n: feeds[n] for n, _, _ in compiled.inputs}))


class NnforgeBackend(Backend):
    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs):
        super().prepare(model, device, **kwargs)
        return NnforgeRep(model, kwargs.get("input_shapes"))

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper() == "CPU"


prepare = NnforgeBackend.prepare
run_model = NnforgeBackend.run_model
supports_device = NnforgeBackend.supports_device
