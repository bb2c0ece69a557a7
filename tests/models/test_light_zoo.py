"""The ONNX light model zoo (weights re-randomized) through the compiler and the interpreter,
both checked against ONNX Runtime: max |diff| / max |ref| <= 1e-4."""
import pytest

import nnforge
from nnforge.bench import ort_session
from nnforge.driver import import_graph
from nnforge.ir import interpret
from nnforge.models import light_zoo
from tests.conftest import rel_err

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", light_zoo.NAMES)
def test_light_model_matches_onnxruntime(name):
    model = light_zoo.load(name, seed=0)
    feed = light_zoo.input_feed(model, seed=1)
    ref = ort_session(model).run(None, feed)
    compiled = nnforge.compile(model)
    for got, want in zip(compiled.run(feed), ref):
        assert got.shape == want.shape
        assert rel_err(got, want) <= 1e-4, f"{name}: compiled output differs from ONNX Runtime"
    for got, want in zip(interpret(import_graph(model), feed), ref):
        assert rel_err(got, want) <= 1e-4, f"{name}: interpreter output differs from ONNX Runtime"
