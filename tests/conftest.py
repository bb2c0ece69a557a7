import os

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Tests never read or fill the user's compile cache."""
    os.environ["NNFORGE_CACHE_DIR"] = str(tmp_path_factory.mktemp("nnforge-cache"))


def pytest_configure(config):
    try:
        import onnxruntime as ort

        ort.set_default_logger_severity(3)
    except ImportError:
        pass


def rel_err(got, want) -> float:
    """max |got - want| / max |want| (0 for two empty arrays)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if want.size == 0:
        return 0.0
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-30))


@pytest.fixture(scope="session")
def small_resnet():
    """A ResNet-18-style model at 64x64 with 16 base channels: fast to compile, real structure."""
    from nnforge.models.builders import resnet

    return resnet(depth=18, num_classes=10, image=64, width=16, seed=1)
