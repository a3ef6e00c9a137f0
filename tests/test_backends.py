"""One contract for every engine in backends.ENGINES, and for the camera-profile backend: patches
in, one probability row per patch out, the same classes as eager PyTorch in fp32."""

import numpy as np
import pytest

import slmcnn
from slmcnn.backends import ENGINES, Backend, TorchBackend, create_backend
from slmcnn.constants import CLASSES

PATCHES = np.random.default_rng(3).integers(0, 256, (12, 128, 128, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny_model(tiny_model_file):
    return slmcnn.load_model(tiny_model_file)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "compiled" else n for n in ENGINES])
def test_every_engine_keeps_the_contract(name, tiny_model):
    backend = create_backend(tiny_model, name, "fp32")
    assert isinstance(backend, Backend) and isinstance(backend.name, str)
    probabilities = backend.probabilities(PATCHES)
    assert probabilities.shape == (len(PATCHES), len(CLASSES)) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-4)
    reference = TorchBackend(tiny_model, "fp32").probabilities(PATCHES)
    np.testing.assert_allclose(probabilities, reference, atol=1e-4)
    assert backend.probabilities(PATCHES[:0]).shape == (0, len(CLASSES))
    wide = backend.probabilities(PATCHES.astype(np.uint16) * 257)  # 16-bit photos, the same picture
    np.testing.assert_allclose(wide, reference, atol=1e-3)


def test_the_camera_profile_backend_keeps_the_contract_and_adds_the_layer_step(shipped_model):
    from slmcnn.backends.profile import ProfileBackend
    from slmcnn.tiles import geometry

    backend = ProfileBackend(None, shipped_model, adapt=4, precision="fp32")
    assert isinstance(backend, Backend)
    probabilities = backend.probabilities(PATCHES[:9])
    reference = TorchBackend(shipped_model, "fp32").probabilities(PATCHES[:9])
    np.testing.assert_allclose(probabilities, reference, atol=1e-3)
    decided, anomaly, adaptation = backend.finish_layer(probabilities, geometry(384, 384, 128), "a/1.png")
    assert decided.shape == probabilities.shape and anomaly is None and adaptation.state == "learning"
