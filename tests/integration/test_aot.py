"""Compiled networks cached per model, CPU and torch version, trusted only with their record and
rebuilt otherwise; `auto`'s choice between eager, compiled and compiling for the next jobs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from slmcnn import aot
from slmcnn.backends import TorchBackend
from slmcnn.backends.compiled import AotBackend
from tests.unit.test_aot import recorded, tiny

PATCHES = np.random.default_rng(0).integers(0, 255, (20, 128, 128, 3), dtype=np.uint8)


def test_a_package_that_does_not_load_is_removed_and_compiled_again(monkeypatch, tmp_path):
    monkeypatch.setenv("SLMCNN_CACHE", str(tmp_path))
    model, compiled = tiny(), []
    path = recorded(model, "fp32")

    def broken(package):
        raise RuntimeError("made by another torch build")

    monkeypatch.setattr(aot, "load_package", broken)
    monkeypatch.setattr(aot, "compile_package", lambda model, precision: compiled.append(precision))
    backend = AotBackend(model, "fp32")
    assert not path.exists() and not aot.record_path(path).exists() and compiled == ["fp32"]
    assert not backend.ready  # another process compiles it (compile_package gave no package): eager meanwhile
    np.testing.assert_allclose(
        backend.probabilities(PATCHES), TorchBackend(model, "fp32").probabilities(PATCHES), atol=1e-5
    )


def test_a_package_that_disagrees_with_eager_is_not_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("SLMCNN_CACHE", str(tmp_path))
    model = tiny()

    def package(program, package_path, inductor_configs):
        Path(package_path).write_bytes(b"a package")

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", package)
    monkeypatch.setattr(aot, "load_package", lambda path: lambda patches: torch.full((len(patches), 3), 1 / 3))
    with pytest.raises(aot.PackageError, match="differ from eager PyTorch's by"):
        aot.compile_package(model, "fp32")
    assert list(tmp_path.iterdir()) == []  # no package, no record, no lock


LAYER = np.random.default_rng(1).integers(0, 255, (200, 232, 3), dtype=np.uint8)


def test_the_texture_runs_compiled_once_its_package_is_in_the_cache(monkeypatch, tmp_path):
    from slmcnn import texture as texture_module

    monkeypatch.setenv("SLMCNN_CACHE", str(tmp_path))
    model, spawned, runs = tiny(), [], []
    monkeypatch.setattr(aot, "spawn_compile", lambda *args, **kwargs: spawned.append(kwargs))
    eager = texture_module.DenseTexture(model, "fp32")
    expected = eager(LAYER)
    texture = texture_module.DenseTexture(model, "fp32")
    for _ in range(texture_module.COMPILE_AFTER - 1):
        np.testing.assert_array_equal(texture(LAYER), expected)
        texture._looked = -float("inf")  # as if LOOK_EVERY had passed
    assert spawned == []  # a short job compiles nothing
    texture(LAYER)
    assert spawned == [{"detach": True, "stops": aot.TEXTURE_STOPS}]  # a longer one, once, for the jobs after it
    texture._looked = -float("inf")
    texture(LAYER)
    assert len(spawned) == 1

    def doubled(strip):  # a package whose maps are twice eager's: seen in the texture (linear after the blocks)
        runs.append(strip.shape)
        return [2 * m for m in eager.network._blocks(strip, aot.TEXTURE_STOPS)[0]]

    path = aot.package_path(model, "fp32", stops=aot.TEXTURE_STOPS)
    path.write_bytes(b"a package")
    made = {"identity": aot.identity(model, "fp32", stops=aot.TEXTURE_STOPS), "max_difference": 0.0, "seconds": 1.0}
    aot.record_path(path).write_text(json.dumps(made))
    monkeypatch.setattr(aot, "load_outputs", lambda path: doubled)
    texture._looked = -float("inf")
    np.testing.assert_allclose(texture(LAYER), 2 * expected, rtol=1e-5, atol=1e-5)
    assert runs and texture.compiled is doubled
    np.testing.assert_array_equal(texture(LAYER[:12]), eager(LAYER[:12]))  # smaller than a package takes: eager

    def failing(strip):
        raise RuntimeError("an Inductor limitation")

    texture.compiled = failing  # a package that fails at run time: eager from then on
    np.testing.assert_array_equal(texture(LAYER), expected)
    assert texture.compiled is None
    texture(LAYER)
    assert texture.compiled is None  # never looked for again
