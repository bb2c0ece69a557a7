"""The quantize pass over ONNX light-zoo models (re-randomized weights): grouped convs, Concat,
channel shuffles, LRN, Softmax heads; int8 close to fp32 in both scale modes."""
import numpy as np
import pytest

from nnforge.driver import import_graph
from nnforge.ir import interpret, verify
from nnforge.models import light_zoo
from nnforge.passes import run_pipeline
from nnforge.passes.manager import random_feeds
from nnforge.passes.quantize import quantize


@pytest.mark.slow
@pytest.mark.parametrize("name", ["squeezenet", "shufflenet"])
def test_light_zoo_model_quantizes(name):
    g = run_pipeline(import_graph(light_zoo.load(name)))
    calib, test = [random_feeds(g, s) for s in range(2)], random_feeds(g, 5)
    want = interpret(g, test)[0].ravel().astype(np.float64)
    for power_of_two in (False, True):
        q = quantize(g, calib, "minmax", power_of_two=power_of_two)
        verify(q)
        assert q.op_histogram()["QConv"] >= 20 and "Conv" not in q.op_histogram()
        got = interpret(q, test)[0].ravel().astype(np.float64)
        assert got @ want / (np.linalg.norm(got) * np.linalg.norm(want)) >= 0.99
