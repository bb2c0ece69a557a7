"""The exceptions the VTA encoder and simulator raise (all are nnforge errors)."""
from ...errors import NnforgeError


class VTAError(NnforgeError):
    """Base class of every VTA-specific failure."""


class VTAEncodingError(VTAError):
    """An instruction or micro-op field is out of range, or 128 bits do not decode."""


class VTASimError(VTAError):
    """The simulator refused a program: out-of-bounds access, bad memory type, bad flags."""


class VTADeadlockError(VTASimError):
    """No module can make progress, or FINISH came before the other modules were done."""
