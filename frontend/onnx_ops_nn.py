"""ONNX -> IR converters for neural-network ops with opset-dependent forms: convolutions,
pools, normalizations, Softmax and Resize/Upsample. auto_pad, output_shape, old-opset attributes and
Resize's scales/sizes/axes are all resolved here into the static IR attributes."""
from __future__ import annotations

import copy
import math

import numpy as np
from onnx import TensorProto

from .onnx_load import numpy_dtype
from .onnx_node import OnnxNode


def _spatial_2d(node: OnnxNode) -> tuple:
    """The (H, W) of a 4-D input; UnsupportedError for 3-D variants (1-D ones are lifted)."""
    shape = node.shape()
    if len(shape) != 4:
        raise node.unsupported(f"only 1-D and 2-D {node.op} (3-D or 4-D input) is supported; "
                               f"input has rank {len(shape)}")
    return shape[2:]


# The entry a 1-D window attribute gets for the unit height axis.
_UNIT_AXIS_VALUES = {"kernel_shape": 1, "strides": 1, "dilations": 1, "output_shape": 1,
                     "pads": 0, "output_padding": 0}


def _lift_1d(convert):
    """Wrap a 2-D window converter so a 1-D node (input [N,C,L]) runs as 2-D on [N,C,1,L].

    Every rank-3 input (x, and Conv/ConvTranspose weights [M,C,k]: constant ones fold at
    import) gets a unit axis before its last one, each window attribute an entry for that
    axis, and the result drops the axis again.
    """
    def lifted(node: OnnxNode):
        if len(node.shape()) != 3:
            return convert(node)
        view = copy.copy(node)
        view.outputs = [""] * len(node.outputs)  # the final Reshape takes the ONNX names
        view.inputs = [v if v is None or v.type.rank != 3 else
                       node.emit("Reshape", [v], {"shape": _insert_unit(v.type.shape, 1)}, final=False)[0]
                       for v in node.inputs]
        view.attrs = {k: _insert_unit(v, _UNIT_AXIS_VALUES[k], runs=2 if k == "pads" else 1)
                      if k in _UNIT_AXIS_VALUES else v for k, v in node.attrs.items()}
        (y,) = convert(view)
        return node.emit("Reshape", [y], {"shape": y.type.shape[:2] + y.type.shape[3:]})
    return lifted


def _insert_unit(values, unit, runs: int = 1) -> list:
    """`values` cut into `runs` equal parts (pads: begins, ends), `unit` put before the last
    entry of each."""
    n = max(len(values) // runs, 1)
    return [v for i in range(0, len(values), n) for v in (*values[i:i + n - 1], unit, values[i + n - 1])]


def _window_attrs(node: OnnxNode, kernel) -> dict:
    """strides, dilations and pads (auto_pad resolved) of a 2-D sliding-window op."""
    strides = list(node.attr("strides") or (1, 1))
    dilations = list(node.attr("dilations") or (1, 1))
    auto_pad = node.attr("auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", ""):
        pads = list(node.attr("pads") or (0, 0, 0, 0))
    elif auto_pad == "VALID":
        pads = [0, 0, 0, 0]
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for size, k, s, d in zip(_spatial_2d(node), kernel, strides, dilations):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, large = total // 2, total - total // 2
            begins.append(small if auto_pad == "SAME_UPPER" else large)
            ends.append(large if auto_pad == "SAME_UPPER" else small)
        pads = begins + ends
    else:
        raise node.unsupported(f"auto_pad {auto_pad!r}")
    if len(pads) != 4 or len(strides) != 2 or len(dilations) != 2:
        raise node.model_error("pads, strides and dilations must fit a 2-D window")
    return {"strides": strides, "dilations": dilations, "pads": pads}


def conv(node: OnnxNode):
    _spatial_2d(node)
    kernel = node.inputs[1].type.shape[2:]
    attrs = {**_window_attrs(node, kernel), "group": node.attr("group", 1)}
    return node.emit("Conv", node.present_inputs(), attrs)


def conv_transpose(node: OnnxNode):
    size = _spatial_2d(node)
    kernel = node.inputs[1].type.shape[2:]
    strides = list(node.attr("strides") or (1, 1))
    dilations = list(node.attr("dilations") or (1, 1))
    out_pad = list(node.attr("output_padding") or (0, 0))
    auto_pad = node.attr("auto_pad", "NOTSET")
    pads = list(node.attr("pads") or (0, 0, 0, 0))
    output_shape = node.attr("output_shape")
    if output_shape or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        wanted = list(output_shape)[-2:] if output_shape else [n * s for n, s in zip(size, strides)]
        begins, ends = [], []
        for i in range(2):
            natural = (size[i] - 1) * strides[i] + out_pad[i] + (kernel[i] - 1) * dilations[i] + 1
            total = natural - wanted[i]
            if total < 0:  # the requested output is larger: extra rows come from output_padding
                out_pad[i] -= total
                total = 0
            small, large = total // 2, total - total // 2
            odd_at_end = auto_pad == "SAME_UPPER"  # how the ONNX reference splits an odd total
            begins.append(small if odd_at_end else large)
            ends.append(large if odd_at_end else small)
        pads = begins + ends
    elif auto_pad == "VALID":
        pads = [0, 0, 0, 0]
    elif auto_pad not in ("NOTSET", ""):
        raise node.unsupported(f"auto_pad {auto_pad!r}")
    attrs = {"strides": strides, "dilations": dilations, "pads": pads,
             "group": node.attr("group", 1), "output_padding": out_pad}
    return node.emit("ConvTranspose", node.present_inputs(), attrs)


def max_pool(node: OnnxNode):
    _spatial_2d(node)
    kernel = node.attr("kernel_shape")
    attrs = {**_window_attrs(node, kernel), "kernel_shape": kernel, "ceil_mode": node.attr("ceil_mode", 0)}
    return node.emit("MaxPool", [node.input(0)], attrs)


def average_pool(node: OnnxNode):
    _spatial_2d(node)
    kernel = node.attr("kernel_shape")
    attrs = {**_window_attrs(node, kernel), "kernel_shape": kernel,
             "ceil_mode": node.attr("ceil_mode", 0),
             "count_include_pad": node.attr("count_include_pad", 0)}
    return node.emit("AveragePool", [node.input(0)], attrs)


def batch_norm(node: OnnxNode):
    if node.attr("training_mode", 0):
        raise node.unsupported("training_mode=1 (only inference BatchNormalization is supported)")
    if not node.attr("spatial", 1):
        raise node.unsupported("spatial=0 (per-activation statistics)")
    return node.emit("BatchNormalization", node.inputs[:5], {"epsilon": node.attr("epsilon", 1e-5)})


def layer_norm(node: OnnxNode):
    """Y is the IR op; the optional Mean and InvStdDev outputs, when read, are spelled out."""
    rank = len(node.shape())
    axis, epsilon = node.axis(node.attr("axis", -1), rank), node.attr("epsilon", 1e-5)
    (y,) = node.emit("LayerNormalization", node.present_inputs(), {"axis": axis, "epsilon": epsilon})
    if not (node.output_used(1) or node.output_used(2)):
        return [y]
    return [y, *_layer_norm_statistics(node, axis, epsilon)]


def _layer_norm_statistics(node: OnnxNode, axis: int, epsilon: float) -> list:
    """[Mean, InvStdDev or None] over axes axis..rank-1 (kept as size 1), computed in
    stash_type (float32 by default) as the ONNX function body does."""
    x, rank = node.input(0), len(node.shape())
    stash = numpy_dtype(node.attr("stash_type", TensorProto.FLOAT), f"node {node.name} stash_type")
    if x.type.dtype != stash:
        (x,) = node.emit("Cast", [x], {"to": stash}, final=False)
    reduce = {"axes": list(range(axis, rank)), "keepdims": 1}
    (mean,) = node.emit("ReduceMean", [x], reduce, first_output=1)
    if not node.output_used(2):
        return [mean, None]
    (diff,) = node.emit("Sub", [x, mean], final=False)
    (square,) = node.emit("Mul", [diff, diff], final=False)
    (variance,) = node.emit("ReduceMean", [square], reduce, final=False)
    (shifted,) = node.emit("Add", [variance, node.helper_constant(np.array(epsilon, stash), "epsilon")],
                           final=False)
    (std,) = node.emit("Sqrt", [shifted], final=False)
    return [mean, *node.emit("Reciprocal", [std], first_output=2)]


def softmax(node: OnnxNode):
    """Softmax/LogSoftmax; before opset 13 the input is coerced to 2-D at `axis`."""
    x = node.input(0)
    shape = x.type.shape
    axis = node.axis(node.attr("axis", -1 if node.opset >= 13 else 1), len(shape))
    if node.opset >= 13 or axis == len(shape) - 1:
        return node.emit(node.op, [x], {"axis": axis})
    flat = [math.prod(shape[:axis]), math.prod(shape[axis:])]
    (x2d,) = node.emit("Reshape", [x], {"shape": flat}, final=False)
    (y2d,) = node.emit(node.op, [x2d], {"axis": 1}, final=False)
    return node.emit("Reshape", [y2d], {"shape": shape})


RESIZE_MODES = {"nearest": "nearest", "linear": "linear", "bilinear": "linear", "cubic": "cubic"}


def resize(node: OnnxNode):
    """Resize (opset 10+) and Upsample (7-9): scales and sizes both made explicit."""
    shape = node.shape()
    mode = RESIZE_MODES.get(node.attr("mode", "nearest"))
    if mode is None:
        raise node.unsupported(f"mode {node.attr('mode')!r}")
    if node.op == "Upsample" or node.opset < 11:
        scales = node.attr("scales") if node.op == "Upsample" and node.opset < 9 else \
            [float(s) for s in node.static(1, "scales").reshape(-1)]
        return _resize(node, mode, scales, _floor_sizes(shape, scales), _legacy_resize_attrs(node, scales))
    if node.attr("antialias", 0):
        raise node.unsupported("antialias=1")
    transform = node.attr("coordinate_transformation_mode", "half_pixel")
    axes = [node.axis(a, len(shape)) for a in (node.attr("axes") or range(len(shape)))]
    scales, sizes = node.static(2, "scales"), node.static_ints(3, "sizes")
    if sizes:
        scales, sizes = _scales_from_sizes(node, shape, axes, sizes)
    elif scales is not None and scales.size:
        full = [1.0] * len(shape)
        for axis, s in zip(axes, scales.reshape(-1)):
            full[axis] = float(s)
        scales, sizes = full, _floor_sizes(shape, full)
    else:
        raise node.model_error("Resize needs scales or sizes")
    attrs = {"coordinate_transformation_mode": transform,
             **{k: node.attrs[k] for k in ("nearest_mode", "cubic_coeff_a", "exclude_outside",
                                           "extrapolation_value") if k in node.attrs}}
    if transform == "tf_crop_and_resize":  # roi means nothing to the other modes
        attrs["roi"] = _full_roi(node, len(shape), axes)
    return _resize(node, mode, scales, sizes, attrs)


def _full_roi(node: OnnxNode, rank: int, axes) -> list:
    """The roi input (starts then ends of `axes`) for every axis: (0, 1) where not given;
    empty (the whole input) when the input is omitted or empty."""
    roi = node.static(1, "roi")
    if roi is None or roi.size == 0:
        return []
    roi = [float(v) for v in roi.reshape(-1)]
    if len(roi) != 2 * len(axes):
        raise node.model_error(f"roi has {len(roi)} values; expected 2 per resized axis ({2 * len(axes)})")
    full = [0.0] * rank + [1.0] * rank
    for i, axis in enumerate(axes):
        full[axis], full[rank + axis] = roi[i], roi[len(axes) + i]
    return full


def _resize(node: OnnxNode, mode: str, scales, sizes, attrs: dict):
    if len(scales) != len(node.shape()):
        raise node.model_error(f"expected {len(node.shape())} scales, got {len(scales)}")
    return node.emit("Resize", [node.input(0)], {**attrs, "mode": mode, "scales": scales, "sizes": sizes})


def _floor_sizes(shape, scales) -> list:
    # ONNX: output_dim = floor(input_dim * scale), the float32 scale widened to float64.
    return [int(math.floor(d * float(np.float32(s)))) for d, s in zip(shape, scales)]


def _scales_from_sizes(node: OnnxNode, shape, axes, sizes) -> tuple:
    """scales = sizes / shape, after keep_aspect_ratio_policy (opset 18) shrinks or grows sizes."""
    if len(sizes) != len(axes):
        raise node.model_error(f"expected {len(axes)} sizes, got {len(sizes)}")
    ratios = {axis: size / shape[axis] for axis, size in zip(axes, sizes)}
    policy = node.attr("keep_aspect_ratio_policy", "stretch")
    if policy in ("not_larger", "not_smaller"):
        scale = (min if policy == "not_larger" else max)(ratios.values())
        ratios = {axis: scale for axis in axes}
        sizes = [int(scale * shape[axis] + 0.5) for axis in axes]  # ONNX rounds half up here
    elif policy != "stretch":
        raise node.unsupported(f"keep_aspect_ratio_policy {policy!r}")
    full_sizes = list(shape)
    for axis, size in zip(axes, sizes):
        full_sizes[axis] = size
    return [ratios.get(axis, 1.0) for axis in range(len(shape))], full_sizes


def _legacy_resize_attrs(node: OnnxNode, scales) -> dict:
    """Upsample and Resize-10: asymmetric coordinates; nearest rounds down when upsampling
    and up when downsampling (ONNX Runtime's "simple" mode), so mixed scales are unsupported."""
    if all(s >= 1 for s in scales):
        nearest = "floor"
    elif all(s <= 1 for s in scales):
        nearest = "ceil"
    else:
        raise node.unsupported("nearest resize mixing up- and down-sampling before opset 11")
    return {"coordinate_transformation_mode": "asymmetric", "nearest_mode": nearest}


NN_CONVERTERS = {
    "Conv": _lift_1d(conv), "ConvTranspose": _lift_1d(conv_transpose), "MaxPool": _lift_1d(max_pool),
    "AveragePool": _lift_1d(average_pool),
    "BatchNormalization": batch_norm, "LayerNormalization": layer_norm,
    "Softmax": softmax, "LogSoftmax": softmax, "Resize": resize, "Upsample": resize,
}
