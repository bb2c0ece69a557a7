"""The pruning spec: what `--prune SPEC` and `prune(graph, spec)` accept.

    magnitude:0.8          zero the 80% smallest weights of every Conv/Gemm/MatMul (unstructured)
    block:16x1:0.9         zero 90% of the 16x1 blocks (rows x cols of the weight as W[out, in]),
                           the blocks with the smallest L1 norm
    channel:l1:0.5         remove half the output channels of every prunable conv (smallest filter L1)
    channel:slimming:0.5   remove half of all prunable channels, ranked globally by |BatchNorm gamma|
"""
from __future__ import annotations

from dataclasses import dataclass

from ...errors import NnforgeError

FORMS = ("magnitude:RATIO", "block:RxC:RATIO", "channel:l1:RATIO", "channel:slimming:RATIO")
CHANNEL_CRITERIA = ("l1", "slimming")


@dataclass(frozen=True)
class PruneSpec:
    """One pruning method.

    method: "magnitude", "block" or "channel".
    ratio: the fraction of weights (blocks, channels) removed, 0 <= ratio < 1.
    block: (rows, cols) of a block of W[out, in] ((1, 1) for magnitude).
    criterion: channel ranking, "l1" or "slimming" (channel pruning only).
    """

    method: str
    ratio: float
    block: tuple = (1, 1)
    criterion: str = ""

    def __str__(self):
        middle = {"magnitude": "", "block": f"{self.block[0]}x{self.block[1]}:", "channel": f"{self.criterion}:"}
        return f"{self.method}:{middle[self.method]}{self.ratio:g}"


def _ratio(text: str, spec: str) -> float:
    try:
        ratio = float(text)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio < 1.0:
        raise NnforgeError(f"--prune {spec!r}: the ratio must be a number in [0, 1), got {text!r}")
    return ratio


def parse_prune_spec(spec: str) -> PruneSpec:
    """Parse a spec string (module doc); NnforgeError listing the accepted forms when it is malformed."""
    parts = spec.strip().split(":")
    bad = NnforgeError(f"--prune expects one of {', '.join(FORMS)}; got {spec!r}")
    if parts[0] == "magnitude" and len(parts) == 2:
        return PruneSpec("magnitude", _ratio(parts[1], spec))
    if parts[0] == "block" and len(parts) == 3:
        rows, sep, cols = parts[1].partition("x")
        if not (sep and rows.isdigit() and cols.isdigit() and int(rows) > 0 and int(cols) > 0):
            raise NnforgeError(f"--prune {spec!r}: the block must be ROWSxCOLS, e.g. 16x1 or 4x4; got {parts[1]!r}")
        return PruneSpec("block", _ratio(parts[2], spec), (int(rows), int(cols)))
    if parts[0] == "channel" and len(parts) == 3:
        if parts[1] not in CHANNEL_CRITERIA:
            raise NnforgeError(f"--prune {spec!r}: channel criterion must be one of {CHANNEL_CRITERIA}, "
                               f"got {parts[1]!r}")
        return PruneSpec("channel", _ratio(parts[2], spec), criterion=parts[1])
    raise bad
