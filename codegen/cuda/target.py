"""The CUDA target: which GPU architecture to generate code for.

`--target cuda` means `{"kind": "cuda", "arch": "sm_90"}` (H100/H200); a JSON string or
a dict may set any field of CudaTarget (`{"kind": "cuda", "arch": "sm_80"}`).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

from ...errors import UnsupportedError

# fp32 FLOP/s without tensor cores and HBM bytes/s, for the cost model only
_PEAK = {"sm_90": (60e12, 3.3e12), "sm_89": (80e12, 1.0e12), "sm_80": (19.5e12, 1.9e12)}


@dataclass(frozen=True)
class CudaTarget:
    """An NVIDIA GPU target (code is generated here; it runs on a machine with that GPU)."""

    kind: ClassVar[str] = "cuda"  # selects the rule table (codegen/rules.py TARGET_RULES)
    overlaps_memory: ClassVar[bool] = True  # cost model: roofline (codegen/rules.py estimate_seconds)
    arch: str = "sm_90"
    max_threads_per_block: int = 1024
    max_shared_memory_per_block: int = 48 * 1024
    thread_warp_size: int = 32

    @property
    def peak_flops(self) -> float:
        return _PEAK.get(self.arch, _PEAK["sm_90"])[0]

    @property
    def memory_bandwidth(self) -> float:
        return _PEAK.get(self.arch, _PEAK["sm_90"])[1]

    def to_json(self) -> dict:
        return {"kind": "cuda", **asdict(self)}

    def tvm_target(self):
        """The tvm Target: CUDA kernels, host code for this CPU (LLVM)."""
        import tvm

        return tvm.target.Target(self.to_json(), host={"kind": "llvm"})


def parse_target(spec) -> CudaTarget:
    """A CudaTarget from "cuda", a JSON object string, or a dict with "kind": "cuda".

    Raises:
        UnsupportedError naming the bad field or value.
    """
    if spec == "cuda":
        return CudaTarget()
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as e:
            raise UnsupportedError(f"target {spec!r}: neither a target name nor a JSON object ({e})") from None
    if not isinstance(spec, dict) or spec.get("kind") != "cuda":
        raise UnsupportedError(f"target {spec!r}: expected \"cuda\" or a JSON object with \"kind\": \"cuda\"")
    known = {f.name: f.type for f in fields(CudaTarget)}
    unknown = sorted(set(spec) - set(known) - {"kind"})
    if unknown:
        raise UnsupportedError(f"cuda target: unknown field(s) {unknown}; known: {sorted(known)}")
    values = {k: v for k, v in spec.items() if k != "kind"}
    arch = values.get("arch", "sm_90")
    if not (isinstance(arch, str) and arch.startswith("sm_") and arch[3:].rstrip("a").isdigit()):
        raise UnsupportedError(f"cuda target: arch must look like \"sm_90\", got {arch!r}")
    for k, v in values.items():
        if k != "arch" and (not isinstance(v, int) or v <= 0):
            raise UnsupportedError(f"cuda target: {k} must be a positive integer, got {v!r}")
    return CudaTarget(**values)
