"""The exceptions nnforge raises. Every user-facing failure is one of these."""


class NnforgeError(Exception):
    """Base class of every error nnforge raises on purpose."""


class ModelError(NnforgeError):
    """The input model is malformed, truncated, of an unsupported version, or inconsistent."""


class UnsupportedError(NnforgeError):
    """The model uses something nnforge does not implement (an op, an attribute value, a dtype).

    `items` lists every offending (op, opset, node name, reason) at once.
    """

    def __init__(self, message, items=()):
        super().__init__(message)
        self.items = list(items)


class StaticInputError(UnsupportedError):
    """A value the IR needs at compile time (a shape, axes, pads, scales...) is computed at
    run time. `value` is its ONNX name; when it is a graph input, a caller that knows the
    input's value (nnforge.backend) can compile a specialization."""

    def __init__(self, message, value: str, items=()):
        super().__init__(message, items)
        self.value = value


class ShapeError(NnforgeError):
    """Types or shapes do not agree (verifier, shape inference)."""


class InputError(NnforgeError):
    """A run-time feed has a wrong name, shape or dtype."""


class CompileError(NnforgeError):
    """Lowering or building a kernel failed; names the node and op."""


class ArtifactError(NnforgeError):
    """An exported artifact is missing files, or its checksums or version do not match."""
