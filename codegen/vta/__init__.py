"""The VTA backend: int8 conv2d/dense layers lowered to VTA instruction streams.

The ISA and the simulator live in runtime.vta (runtime must not import codegen).
"""
from .conv2d import Conv2dPlan, VTALayer, lower_conv2d, lower_dense, plan_conv2d
from .layout import pack_activations, pack_weights, unpack_activations
from .reference import conv2d_int8_reference, dense_int8_reference

__all__ = ["Conv2dPlan", "VTALayer", "lower_conv2d", "lower_dense", "plan_conv2d", "pack_activations",
           "pack_weights", "unpack_activations", "conv2d_int8_reference", "dense_int8_reference"]
