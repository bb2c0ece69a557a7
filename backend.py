"""nnforge as an `onnx.backend.base.Backend`, so ONNX's own backend-test machinery can drive it.

    import nnforge.backend as backend
    rep = backend.prepare(model)            # compiles for the CPU
    outputs = rep.run([x])                  # or a dict of name -> array
"""
from __future__ import annotations

import numpy as np
from onnx.backend.base import Backend, BackendRep

from . import compile as _compile


class NnforgeRep(BackendRep):
    """A compiled model behind the BackendRep interface."""

    def __init__(self, compiled):
        self.compiled = compiled

    def run(self, inputs, **kwargs):
        names = [n for n, _, _ in self.compiled.inputs]
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            inputs = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            feeds = dict(zip(names, inputs))
        return tuple(self.compiled.run(feeds))


class NnforgeBackend(Backend):
    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs):
        super().prepare(model, device, **kwargs)
        return NnforgeRep(_compile(model, input_shapes=kwargs.get("input_shapes")))

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper() == "CPU"


prepare = NnforgeBackend.prepare
run_model = NnforgeBackend.run_model
supports_device = NnforgeBackend.supports_device
