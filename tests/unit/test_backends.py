"""One interface for every engine in backends.ENGINES (base.Network: classify, the camera profile's
tile maps, the fine maps' dense maps) and for the camera-profile backend (base.JudgedBackend):
patches in, one probability row per patch out, the same classes as eager PyTorch in fp32; a new
engine is one class; the device is cpu, cuda or auto, and cuda without a GPU is one clear line."""

import numpy as np
import pytest
import torch

from slmcnn import backends, precision
from slmcnn.backends import ENGINES, Network, TorchBackend, base, create_backend, create_engine
from slmcnn.errors import SettingsError
from slmcnn.preprocess import standardise

PATCHES = np.random.default_rng(3).integers(0, 256, (12, 128, 128, 3), dtype=np.uint8)


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("name", ["torch", "onnx"])
def test_every_engine_offers_the_maps_the_profile_and_the_fine_maps_read(name, tiny_model):
    backend = create_backend(tiny_model, name, "fp32", device="cpu")
    (mid, deep), classified = backend.tile_maps(PATCHES[:4], (2, 3), classify=True)
    assert mid.shape[:2] == (4, tiny_model.spec.filters[1]) and mid.shape[-1] == 128 // 4
    assert deep.shape[-1] == 128 // 8 and mid.dtype == deep.dtype == torch.float32
    np.testing.assert_allclose(classified, backend.probabilities(PATCHES[:4]), atol=1e-4)
    assert backend.tile_maps(PATCHES[:4], (2,))[1] is None  # features only: no head
    # a whole image standardised as a patch is: the same maps as that patch's
    image = standardise(torch.from_numpy(PATCHES[:1]).float() / 255)[0].numpy()
    (dense,) = backend.dense_maps(image, (3,))
    np.testing.assert_allclose(dense.numpy(), deep[:1].numpy(), atol=1e-4)
    (wide,) = backend.dense_maps(np.zeros((256, 384, 3), np.float32), (3,))
    assert wide.shape[-2:] == (256 // 8, 384 // 8)


@pytest.mark.parametrize("shape", [(203, 300), (64, 64), (37, 517)])
def test_dense_maps_in_strips_are_the_whole_image_at_once(monkeypatch, tiny_model, shape):
    backend = create_backend(tiny_model, "torch", "fp32", device="cpu")
    image = np.random.default_rng(5).standard_normal((*shape, 3)).astype(np.float32)
    monkeypatch.setattr(base, "STRIP_PIXELS", 10**9)  # one strip: the whole image
    whole = backend.dense_maps(image, (1, 2, 3))
    monkeypatch.setattr(base, "STRIP_PIXELS", 8 * shape[1])  # strips of 8 rows: many edges, odd ends
    strips = backend.dense_maps(image, (1, 2, 3))
    for a, b in zip(whole, strips, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)  # float rounding apart


def test_a_new_engine_is_one_class_and_one_entry(monkeypatch, tiny_model):
    class Doubled(Network):
        """Classifies by eager PyTorch twice as many patches a call: only `probabilities` is its own."""

        name = "doubled"

        def probabilities(self, patches):
            return self.eager_probabilities(patches, 16)

    monkeypatch.setitem(ENGINES, "doubled", lambda model, precision, patches: Doubled(model, precision))
    monkeypatch.setattr(backends, "BACKENDS", (*backends.BACKENDS, "doubled"))
    engine = create_engine(tiny_model, "doubled", "fp32", device="cpu").backend
    assert isinstance(engine, Doubled)
    np.testing.assert_allclose(
        engine.probabilities(PATCHES), TorchBackend(tiny_model, "fp32").probabilities(PATCHES), atol=1e-5
    )
    assert engine.tile_maps(PATCHES[:2], (1,))[0][0].shape[0] == 2
    with pytest.raises(TypeError):  # an engine that cannot classify is no engine

        class Mute(Network):
            name = "mute"

        Mute(tiny_model)


def test_auto_is_the_cpu_without_a_gpu_and_cuda_is_refused_in_one_line(no_gpu, tiny_model):
    assert precision.resolve_device("auto") == torch.device("cpu")
    assert create_backend(tiny_model, "torch", "fp32").device == torch.device("cpu")
    with pytest.raises(SettingsError, match="sees no CUDA GPU") as refused:
        create_backend(tiny_model, "torch", "fp32", device="cuda")
    assert "\n" not in str(refused.value) and "use device cpu or auto" in str(refused.value)
    with pytest.raises(SettingsError, match="device must be one of auto, cpu, cuda"):
        precision.resolve_device("gpu")


def test_on_a_gpu_only_eager_pytorch_runs_and_bf16_follows_the_card(monkeypatch, tiny_model):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # resolved, never used: no engine is built
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert precision.resolve_device("auto") == torch.device("cuda")
    assert precision.resolve_precision("auto", "cuda") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert precision.resolve_precision("auto", "cuda") == "fp32"
    for name in ("compiled", "onnx"):
        with pytest.raises(SettingsError, match=f"backend {name} runs on the CPU only"):
            create_backend(tiny_model, name, device="cuda")
