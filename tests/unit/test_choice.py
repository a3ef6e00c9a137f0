"""`auto` without AMX: the engines timed once per CPU, torch and model, the choice read after that.
Rates here are given, never measured: no test asserts a timing."""

import json

import numpy as np
import pytest
import torch

from slmcnn import aot
from slmcnn.backends import TorchBackend, choice
from slmcnn.backends.choice import measure as real_measure
from slmcnn.model import create_model

PATCHES = np.random.default_rng(5).integers(0, 256, (24, 128, 128, 3), dtype=np.uint8)


def tiny(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("slmcnn-tiny").eval()


class Stub:
    """An engine whose rate is given; it classifies as float32 does, or (`wrong`) never."""

    def __init__(self, name: str, model: torch.nn.Module, wrong: bool = False):
        self.name, self.reference, self.wrong = name, TorchBackend(model, "fp32"), wrong

    def probabilities(self, patches: np.ndarray) -> np.ndarray:
        probabilities = self.reference.probabilities(patches)
        return np.roll(probabilities, 1, axis=1) if self.wrong else probabilities


@pytest.fixture(name="engines")
def engines_fixture(monkeypatch, tmp_path):
    """Measuring as `auto` does, on given rates; counts how often the engines were timed."""
    monkeypatch.setenv("SLMCNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(choice, "sample_patches", lambda patch: PATCHES)
    rates = {"compiled-bf16": 20.0, "compiled-fp32": 200.0, "onnx-fp32": 150.0, "onnx-int8": 300.0}
    monkeypatch.setattr(choice, "rate", lambda backend, patches: rates[backend.name])
    timed = []

    def counted(model, candidates):
        timed.append(model)
        return real_measure(model, candidates)

    monkeypatch.setattr(choice, "measure", counted)

    def candidates(model, wrong=()):
        return {name: (lambda n=name: Stub(n, model, n in wrong)) for name in rates}

    return candidates, timed


def test_an_engine_that_disagrees_with_float32_is_not_chosen(engines):
    candidates, _ = engines
    model = tiny()
    made = candidates(model, wrong={"onnx-int8"})
    assert choice.choose(model, made, set(made)).chosen == "compiled-fp32"
    assert json.loads(aot.choice_path(model).read_text())["agreement"]["onnx-int8"] == 0.0


def test_onnx_files_are_exported_once_into_the_cache(monkeypatch, tmp_path):
    from slmcnn.backends import onnxrt

    monkeypatch.setenv("SLMCNN_CACHE", str(tmp_path / "cache"))
    model = tiny()
    fp32, int8 = onnxrt.onnx_file(model), onnxrt.onnx_file(model, int8=True)
    assert fp32.parent == int8.parent == tmp_path / "cache" and fp32 != int8
    monkeypatch.setattr(onnxrt, "_export", lambda *args: pytest.fail("exported twice"))
    assert onnxrt.onnx_file(model, int8=True) == int8
    assert onnxrt.OnnxBackend(int8, model).probabilities(PATCHES[:4]).shape == (4, 3)
