"""Model builders (random weights, onnx.helper) and the ONNX light zoo with re-randomized weights."""
