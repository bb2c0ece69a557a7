"""ONNX's own backend-test machinery (onnx.backend.test.BackendTest) driving nnforge.backend.

A representative subset of node tests runs here through the unittest classes ONNX
generates; tests/test_conformance.py runs every case of every claimed op.
"""
import onnx.backend.test

import nnforge.backend

_backend_test = onnx.backend.test.BackendTest(nnforge.backend, __name__)
for _pattern in (r"test_relu_cpu$", r"test_conv_with_strides_padding_cpu$", r"test_gemm_all_attributes_cpu$",
                 r"test_maxpool_2d_pads_cpu$", r"test_softmax_axis_1_cpu$", r"test_slice_neg_steps_cpu$",
                 r"test_reshape_negative_dim_cpu$", r"test_resize_upsample_scales_linear_cpu$"):
    _backend_test.include(_pattern)
# ONNX's runner marks every case not included as skipped; keep only the included ones so the
# report is not thousands of skips.
_cases = _backend_test.test_cases  # (a property that builds new classes on every access)
for _case in _cases.values():
    for _name in [n for n in dir(_case) if n.startswith("test_")]:
        if getattr(getattr(_case, _name), "__unittest_skip__", False):
            delattr(_case, _name)
globals().update(_cases)
