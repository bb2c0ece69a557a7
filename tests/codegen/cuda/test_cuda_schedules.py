"""Every CUDA schedule, checked numerically without a GPU.

Each node is lowered with the cuda rules, built for CUDA (codegen must accept it), and
the same scheduled PrimFunc, its thread-bound loops made serial, is built with LLVM and
run against the numpy reference (see codegen/cuda/schedule_gpu.py).
"""
from __future__ import annotations

import os
import re
import shutil
import sys

os.environ.setdefault("TVM_NUM_THREADS", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from kernel_harness import Const, assert_close  # noqa: E402
from nnforge.codegen import rules  # noqa: E402
from nnforge.codegen.cuda import CudaTarget  # noqa: E402
from nnforge.codegen.cuda.schedule_gpu import without_thread_bindings  # noqa: E402
from nnforge.codegen.kernel import KernelInput, LowerNode  # noqa: E402
from nnforge.ir import get_op  # noqa: E402
from nnforge.ir.types import TensorType  # noqa: E402

RNG = np.random.default_rng(7)


def rand(*shape):
    return RNG.standard_normal(shape).astype("float32")


def kernels(source: str) -> set:
    """Names of the __global__ functions in CUDA source."""
    return set(re.findall(r"__global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(", source))


def check_cuda(op, attrs, inputs, rule_name, rtol=1e-5):
    """Lower with the cuda rules, assert the rule named `rule_name` was chosen (a callable:
    lower with it instead), build for CUDA, and compare the serialized schedule's outputs
    with the reference. Returns the CUDA source."""
    import tvm

    arrays = [np.asarray(x.data if isinstance(x, Const) else x) for x in inputs]
    kinputs = [KernelInput(TensorType.of(a), a if isinstance(x, Const) else None) for x, a in zip(inputs, arrays)]
    opdef = get_op(op)
    attrs = opdef.check_attrs(attrs, "node")
    outs = opdef.infer_types([k.type for k in kinputs], attrs, "node")
    node = LowerNode(op, "node", attrs, kinputs, outs, CudaTarget())
    if callable(rule_name):
        kernel = rule_name(node)
    else:
        choice = rules.select(node)
        assert choice.rule.name == rule_name, choice.explain()
        kernel = choice.kernel
    func = kernel.func.with_attr("global_symbol", "main")
    cuda = tvm.compile(func, target=CudaTarget().tvm_target())
    source = next(m for m in cuda.mod.imports if m.kind == "cuda").inspect_source()
    cpu = tvm.compile(without_thread_bindings(func).with_attr("global_symbol", "main"), target="llvm")
    params = [arrays[a] if isinstance(a, int) else a for a in kernel.args]
    args = [tvm.runtime.tensor(np.ascontiguousarray(p)) for p in params]
    args += [tvm.runtime.tensor(np.zeros(t.shape, t.dtype)) for t in outs]
    cpu["main"](*args)
    for i, expected in enumerate(opdef.run(arrays, attrs)):
        assert_close(args[len(params) + i].numpy(), np.asarray(expected), rtol, f"{op} output {i}: ")
    return source


@pytest.mark.parametrize("shape,w_shape,attrs", [
    ((1, 16, 14, 14), (32, 16, 3, 3), {"pads": [1, 1, 1, 1], "activation": "Relu"}),
    ((2, 3, 23, 19), (20, 3, 5, 5), {"strides": [2, 2], "pads": [2, 1, 2, 1]}),  # odd sizes: padded tiles
    ((1, 12, 9, 9), (18, 4, 3, 3), {"group": 3, "dilations": [2, 2]}),  # grouped: one product per group
    ((1, 130, 7, 7), (100, 130, 1, 1), {}),  # 1x1, K not a multiple of the k step
])
def test_conv2d_implicit_gemm(shape, w_shape, attrs):
    x, w, b = rand(*shape), rand(*w_shape), rand(w_shape[0])
    src = check_cuda("Conv", attrs, [x, Const(w), Const(b)], "gpu-conv2d-implicit-gemm", 1e-5)
    assert "__shared__" in src and "float4" in src  # shared tiles, vectorized B loads
    assert len(kernels(src)) == 1  # the epilogue is applied to the accumulators


@pytest.mark.parametrize("activation", ["Relu", "Relu6", "HardSwish", "Sigmoid"])
@pytest.mark.parametrize("shape,w_shape,attrs", [
    ((1, 8, 10, 10), (16, 8, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((2, 5, 13, 11), (20, 5, 3, 3), {"strides": [2, 2], "pads": [1, 2, 1, 0]}),  # batch 2, odd sizes
    ((2, 6, 9, 7), (10, 3, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}),  # grouped
])
def test_conv2d_fused_epilogue(shape, w_shape, attrs, activation):
    """Bias + residual + activation run in the product's kernel, written straight to NCHW."""
    from nnforge.codegen.cuda import conv2d

    x, w, b = rand(*shape), rand(*w_shape), rand(w_shape[0])
    op, attrs = get_op("Conv"), {**attrs, "activation": activation}
    out_type = op.infer_types([TensorType.of(x), TensorType.of(w)], op.check_attrs(attrs, "n"), "n")[0]
    r = rand(*out_type.shape)
    src = check_cuda("Conv", attrs, [x, Const(w), Const(b), r], "gpu-conv2d-implicit-gemm", 1e-5)
    assert len(kernels(src)) == 1  # no second pass over the output
    node = LowerNode("Conv", "n", op.check_attrs(attrs, "n"),
                     [KernelInput(TensorType.of(a), a if i == 1 else None) for i, a in enumerate([x, w, b, r])],
                     [out_type], CudaTarget())
    kernel = conv2d.conv2d_implicit_gemm(node)
    assert "fused epilogue" in kernel.schedule
    script = kernel.func.script()
    assert f"epilogue: T.Buffer({tuple(out_type.shape)}" in script  # the node's NCHW output, not the product's
    assert re.search(r'product_local = T\.sblock_alloc_buffer\([^)]*\), scope="local"\)', script)  # registers only


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc (CUDA toolkit) here")
def test_conv2d_fused_epilogue_nvcc():
    """nvcc accepts the fused kernel (NCHW write-back from registers, residual read)."""
    from nnforge.codegen.cuda.nvcc import compile_cuda

    x, w, b, r = rand(2, 5, 13, 11), rand(20, 5, 3, 3), rand(20), rand(2, 20, 7, 6)
    src = check_cuda("Conv", {"strides": [2, 2], "pads": [1, 1, 1, 1], "activation": "HardSwish"},
                     [x, Const(w), Const(b), r], "gpu-conv2d-implicit-gemm")
    assert len(compile_cuda(src, CudaTarget(), "cubin")) > 1000


def test_conv2d_depthwise():
    x, w = rand(1, 24, 15, 15), rand(24, 1, 3, 3)
    check_cuda("Conv", {"group": 24, "strides": [2, 2], "pads": [1, 1, 1, 1]}, [x, Const(w)], "gpu-conv2d-depthwise")


@pytest.mark.parametrize("rows", [5, 40, 130])
def test_gemm_transb_bias(rows):
    a, b, c = rand(rows, 300), rand(70, 300), rand(70)
    src = check_cuda("Gemm", {"transB": 1, "alpha": 0.5, "beta": 2.0}, [a, Const(b), Const(c)], "gpu-gemm-tiled")
    assert len(kernels(src)) == 1  # the epilogue is applied to the accumulators


def test_matmul_rows_folded():
    check_cuda("MatMul", {}, [rand(2, 70, 33), Const(rand(33, 65))], "gpu-gemm-tiled")


@pytest.mark.parametrize("op,attrs,a_shape,b_shape", [
    ("Gemm", {"transB": 1, "beta": 0.5}, (1, 1000), (70, 1000)),  # k not a multiple of the threads
    ("MatMul", {}, (1, 1, 300), (300, 45)),
])
def test_gemv_one_row(op, attrs, a_shape, b_shape):
    ins = [rand(*a_shape), Const(rand(*b_shape))] + ([Const(rand(b_shape[0]))] if op == "Gemm" else [])
    src = check_cuda(op, attrs, ins, "gpu-gemv")
    assert len(kernels(src)) == 1  # the epilogue is fused


def test_matmul_batched_runtime_operands():
    check_cuda("MatMul", {}, [rand(2, 3, 70, 33), rand(3, 33, 65)], "gpu-gemm-tiled")


@pytest.mark.parametrize("op,attrs,make", [
    ("Relu", {}, lambda: [rand(2, 5, 7)]),
    ("Add", {}, lambda: [rand(1, 8, 5, 5), rand(8, 1, 1)]),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, lambda: [rand(1, 4, 11, 11)]),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, lambda: [rand(1, 4, 9, 9)]),
    ("GlobalAveragePool", {}, lambda: [rand(1, 6, 7, 7)]),
    ("LRN", {"size": 5}, lambda: [rand(1, 9, 4, 4)]),
    ("BatchNormalization", {}, lambda: [rand(1, 3, 4, 4)] + [Const(np.abs(rand(3)) + 0.5) for _ in range(4)]),
])
def test_generic_schedule(op, attrs, make):
    check_cuda(op, attrs, make(), "gpu-generic", 1e-5)


def test_concat_and_reshape():
    check_cuda("Concat", {"axis": 1}, [rand(1, 3, 4, 4), rand(1, 5, 4, 4)], "gpu-concat")
    check_cuda("Reshape", {"shape": [1, 48]}, [rand(1, 3, 4, 4)], "gpu-reshape")


@pytest.mark.parametrize("op,shape", [("Softmax", (1, 1000)), ("Softmax", (3, 4, 37)), ("LogSoftmax", (2, 300))])
def test_softmax_rows(op, shape):
    src = check_cuda(op, {"axis": len(shape) - 1}, [rand(*shape) * 3], "gpu-softmax-rows", 1e-5)
    assert "threadIdx.x" in src and ("__shfl" in src or "__shared__" in src)  # a cross-thread reduction


@pytest.mark.parametrize("m", [2, 4])
def test_conv2d_winograd(m):
    from nnforge.codegen.cuda import conv2d_winograd

    x, w, b = rand(1, 16, 12, 14), rand(24, 16, 3, 3), rand(24)
    lower = getattr(conv2d_winograd, f"conv2d_winograd_f{m}")
    src = check_cuda("Conv", {"pads": [1, 1, 1, 1], "activation": "Relu"}, [x, Const(w), Const(b)], lower, 1e-4)
    assert "__shared__" in src and len(kernels(src)) == 4  # 2 transform passes, batched GEMM, inverse


@pytest.mark.parametrize("shape", [(4, 300), (2, 3, 64)])
def test_layernorm_rows(shape):
    x, scale, bias = rand(*shape), rand(shape[-1]), rand(shape[-1])
    src = check_cuda("LayerNormalization", {"axis": len(shape) - 1}, [x, Const(scale), Const(bias)],
                     "gpu-layernorm-rows", 1e-5)
    assert "__shfl" in src or "__shared__" in src


@pytest.mark.parametrize("shape,w_shape,attrs,inputs", [
    ((1, 16, 16, 12), (32, 16, 3, 3), {"pads": [1, 1, 1, 1], "activation": "Relu"}, "bias"),
    ((2, 6, 15, 15), (12, 6, 3, 3), {"strides": [2, 2]}, ""),  # 7x7 output: 1-pixel tiles
    ((1, 8, 8, 8), (8, 8, 1, 1), {"activation": "Relu"}, "bias,residual"),
])
def test_conv2d_direct(shape, w_shape, attrs, inputs):
    from nnforge.codegen.cuda import conv2d

    x, w = rand(*shape), rand(*w_shape)
    ins = [x, Const(w)]
    if "bias" in inputs:
        ins.append(Const(rand(w_shape[0])))
    if "residual" in inputs:
        ins.append(rand(shape[0], w_shape[0], shape[2], shape[3]))
    src = check_cuda("Conv", attrs, ins, conv2d.conv2d_direct)
    assert "__shared__" in src and len(kernels(src)) == 1  # epilogue on the accumulators


@pytest.mark.parametrize("op,attrs,shape", [
    ("Split", {"axis": 1, "split": [2, 0, 3]}, (2, 5, 3)),
    ("Slice", {"starts": [1, 4], "ends": [3, -1], "axes": [0, 2], "steps": [1, -2]}, (4, 3, 6)),
    ("Expand", {"shape": [2, 3, 4]}, (3, 1)),
    ("Tile", {"repeats": [2, 3]}, (2, 3)),
])
def test_movement(op, attrs, shape):
    check_cuda(op, attrs, [rand(*shape)], f"gpu-{op.lower()}")
