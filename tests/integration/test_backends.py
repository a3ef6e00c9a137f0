"""One interface for every engine in backends.ENGINES (base.Network: classify, the camera profile's
tile maps, the fine maps' dense maps) and for the camera-profile backend (base.JudgedBackend):
patches in, one probability row per patch out, the same classes as eager PyTorch in fp32; a new
engine is one class; the device is cpu, cuda or auto, and cuda without a GPU is one clear line."""

import numpy as np
import pytest
import torch

from slmcnn.backends import ENGINES, Backend, JudgedBackend, Network, TorchBackend, create_backend
from slmcnn.constants import CLASSES
from tests.conftest import run_cli
from tests.unit.test_backends import PATCHES


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "compiled" else n for n in ENGINES])
def test_every_engine_keeps_the_contract(name, tiny_model):
    backend = create_backend(tiny_model, name, "fp32", device="cpu")
    assert isinstance(backend, Network) and isinstance(backend, Backend) and isinstance(backend.name, str)
    assert backend.device == torch.device("cpu") and backend.precision == "fp32"
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
    assert isinstance(backend, JudgedBackend) and not isinstance(TorchBackend(shipped_model), JudgedBackend)
    assert backend.device == torch.device("cpu")
    probabilities = backend.probabilities(PATCHES[:9])
    reference = TorchBackend(shipped_model, "fp32").probabilities(PATCHES[:9])
    np.testing.assert_allclose(probabilities, reference, atol=1e-3)
    decided, anomaly, adaptation = backend.finish_layer(probabilities, geometry(384, 384, 128), "a/1.png")
    assert decided.shape == probabilities.shape and anomaly is None and adaptation.state == "learning"


@pytest.mark.parametrize("command", ["predict-layer", "calibrate"])
def test_device_cuda_without_a_gpu_is_one_clear_line(command, no_gpu, tiny_build, tiny_model_file, tmp_path):
    layers = sorted((tiny_build / "layers").glob("*.png"))[:5]
    args = [*layers, "--out", tmp_path / "out"] if command == "predict-layer" else [*layers, "--full-frame"]
    result = run_cli(command, *args, "--model", tiny_model_file, "--device", "cuda")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "sees no CUDA GPU; use --device cpu or auto" in result.stderr


def test_predict_layer_runs_on_the_device_auto_picks(no_gpu, tiny_build, tiny_model_file, tmp_path):
    layers = sorted((tiny_build / "layers").glob("*.png"))[:2]
    result = run_cli("predict-layer", *layers, "--out", tmp_path / "out", "--model", tiny_model_file, "--map", "tiles")
    explicit = run_cli(
        "predict-layer", *layers, "--out", tmp_path / "cpu", "--model", tiny_model_file, "--map", "tiles",
        "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == explicit.returncode == 0, result.stderr + explicit.stderr
    maps = sorted(p.name for p in (tmp_path / "out").glob("*.classes.png"))
    assert len(maps) == 2
    for name in maps:
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "cpu" / name).read_bytes()
