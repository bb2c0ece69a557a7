"""The CUDA rule table: `cuda_rule` registers a lowering rule for the cuda target.

Rules follow codegen/rules.py (tried in order, None when they do not apply, generic
fallbacks last, cost model among the applicable ones); they are only kept apart from
the CPU's because the same op needs a different schedule on the GPU.
"""
from __future__ import annotations

import functools

from ..kernel import CpuTarget
from ..rules import TARGET_RULES, rule

CUDA_RULES: dict = {}
TARGET_RULES["cuda"] = CUDA_RULES

cuda_rule = functools.partial(rule, table=CUDA_RULES)

# the CPU rules' TE computes are built for this target when a CUDA rule reuses them
# (compute only: their CPU schedules are not applied)
COMPUTE_TARGET = CpuTarget("x86-64", 1, 8)
