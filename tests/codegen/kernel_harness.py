"""Compile one IR node through the CPU lowering rules, run it, and compare it with the oracle.

Kernel tests build no graph: they name an op, its attributes and its input arrays.

    out, = run_kernel("Add", {}, [a, Const(b)])
    check_against_reference("Softmax", {"axis": 1}, [x])

`Const(array)` marks an input as a constant of the node (the rule then sees
`KernelInput(type, data)` and may fold it at compile time).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

os.environ.setdefault("TVM_NUM_THREADS", "2")  # before TVM's thread pool is first used

import numpy as np

from nnforge.codegen import rules
from nnforge.codegen.kernel import CpuTarget, Kernel, KernelInput, LowerNode
from nnforge.ir import get_op
from nnforge.ir.types import TensorType

# Relative error allowed by default, per output dtype (float16 kernels may compute in
# float16; transcendental intrinsics differ from numpy's in the last bits).
DEFAULT_RTOL = {"float16": 2e-3, "float32": 1e-5, "float64": 1e-10}


@dataclass(frozen=True)
class Const:
    """A node input that is a constant (known at compile time)."""

    data: np.ndarray


@dataclass
class CompiledKernel:
    """A lowered, compiled node: `kernel` as the rule made it, `function` the TVM entry point."""

    kernel: Kernel
    node: LowerNode
    function: object

    def tvm_args(self, arrays) -> list:
        """TVM tensors for the kernel's parameters: its inputs (node inputs or folded
        constants, per `kernel.args`) followed by freshly allocated outputs."""
        import tvm

        dev = tvm.cpu(0)
        params = [arrays[a] if isinstance(a, int) else a for a in self.kernel.args]
        outs = [np.zeros(t.shape, t.dtype) for t in self.node.outputs]
        return [tvm.runtime.tensor(np.array(p, order="C"), dev) for p in params + outs]

    def __call__(self, arrays) -> list:
        """Run on the node's input arrays; returns the outputs as numpy arrays."""
        args = self.tvm_args(arrays)
        self.function(*args)
        return [a.numpy() for a in args[len(self.kernel.args):]]


def _split_inputs(inputs):
    arrays = [np.asarray(x.data if isinstance(x, Const) else x) for x in inputs]
    kinputs = [KernelInput(TensorType.of(a), a if isinstance(x, Const) else None)
               for x, a in zip(inputs, arrays)]
    return arrays, kinputs


def compile_kernel(op: str, attrs: dict, inputs, target: CpuTarget | None = None,
                   options: rules.ScheduleOptions | None = None) -> CompiledKernel:
    """Lower and compile one node.

    Args:
        op: IR op name.
        attrs: attributes (missing ones take the schema default).
        inputs: numpy arrays (run-time inputs) or `Const` (constant inputs).
        target: the CpuTarget (default: this machine).
        options: schedule selection options (e.g. family overrides to test one rule).
    Returns:
        the CompiledKernel; call it with the input arrays.
    """
    import tvm

    target = target or CpuTarget.host()
    opdef = get_op(op)
    attrs = opdef.check_attrs(attrs, op.lower())
    arrays, kinputs = _split_inputs(inputs)
    out_types = opdef.infer_types([k.type for k in kinputs], attrs, op.lower())
    node = LowerNode(op, op.lower(), attrs, kinputs, out_types, target)
    kernel = rules.lower_node(node, options)
    executable = tvm.compile(kernel.func.with_attr("global_symbol", "main"), target=target.tvm_target())
    return CompiledKernel(kernel, node, executable["main"])


def run_kernel(op: str, attrs: dict, inputs, target: CpuTarget | None = None) -> list:
    """Lower, compile and run one node.

    Args:
        op, attrs, inputs, target: as for `compile_kernel`.
    Returns:
        the node's outputs as numpy arrays.
    """
    arrays, _ = _split_inputs(inputs)
    return compile_kernel(op, attrs, inputs, target)(arrays)


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float | None = None, what: str = ""):
    """Same dtype and shape; floats: NaN/inf at the same places and
    max|diff| / max|expected| <= rtol over the finite rest; everything else exact.

    Args:
        actual, expected: the arrays.
        rtol: allowed relative error (default: DEFAULT_RTOL for the dtype).
        what: prefix for the failure message.
    """
    assert actual.dtype == expected.dtype, f"{what}dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}shape {actual.shape} != {expected.shape}"
    if not np.issubdtype(expected.dtype, np.floating):
        bad = np.flatnonzero(actual != expected)
        assert bad.size == 0, (f"{what}{bad.size} elements differ, first at flat index {bad[0]}: "
                               f"{actual.flat[bad[0]]} != {expected.flat[bad[0]]}")
        return
    rtol = DEFAULT_RTOL[expected.dtype.name] if rtol is None else rtol
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    assert np.array_equal(np.isnan(a), np.isnan(e)), f"{what}NaNs at different places"
    finite = np.isfinite(e)
    assert np.array_equal(a[~finite & ~np.isnan(e)], e[~finite & ~np.isnan(e)]), f"{what}infs differ"
    if not finite.any():
        return
    scale = max(np.abs(e[finite]).max(), np.finfo(np.float64).tiny)
    err = np.abs(a[finite] - e[finite]).max() / scale
    assert err <= rtol, f"{what}relative error {err:.3g} > {rtol:.3g}"


def check_against_reference(op: str, attrs: dict, inputs, rtol: float | None = None,
                            target: CpuTarget | None = None) -> list:
    """Run one node as a compiled kernel and as the registry's numpy reference; assert they agree.

    Args:
        op, attrs, inputs, target: as for `compile_kernel`.
        rtol: see `assert_close`.
    Returns:
        the kernel's outputs.
    """
    arrays, _ = _split_inputs(inputs)
    opdef = get_op(op)
    expected = opdef.run(arrays, opdef.check_attrs(attrs, op.lower()))
    actual = run_kernel(op, attrs, inputs, target)
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert_close(a, np.asarray(e), rtol, f"{op} output {i}: ")
    return actual
