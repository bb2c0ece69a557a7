"""The 9 light-zoo models import (IR version 3: initializers listed as inputs, weights made by
ConstantOfShape) into graphs that verify, with static shapes and the expected interface."""
import glob
import os

import onnx
import pytest

from nnforge.frontend import import_model
from nnforge.ir import verify

pytestmark = pytest.mark.slow
LIGHT = sorted(glob.glob(os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/light/*.onnx")))


def test_all_nine_models_are_found():
    assert len(LIGHT) == 9


@pytest.mark.parametrize("path", LIGHT, ids=[os.path.basename(p)[6:-5] for p in LIGHT])
def test_light_model_imports_and_verifies(path):
    proto = onnx.load(path)
    image = next(v.name for v in proto.graph.input if v.name not in {t.name for t in proto.graph.initializer})
    graph = import_model(proto, input_shapes={image: (1, 3, 224, 224)})
    verify(graph)
    assert [v.name for v in graph.inputs] == [image]
    assert [v.name for v in graph.outputs] == [v.name for v in proto.graph.output]
    assert graph.outputs[0].type.shape[:2] == (1, 1000)
    assert not {"ConstantOfShape", "Dropout"} & set(graph.op_histogram())
    assert all(v.is_constant for n in graph.nodes if n.op == "Conv" for v in n.inputs[1:])
