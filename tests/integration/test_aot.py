"""Compiled networks cached per model, CPU and torch version, trusted only with their record and
rebuilt otherwise; `auto`'s choice between eager, compiled and compiling for the next jobs."""

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
