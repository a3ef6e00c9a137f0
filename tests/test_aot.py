"""Compiled networks cached per model, CPU and torch version; `auto`'s choice between eager and compiled."""

import numpy as np
import pytest
import torch

import slmcnn
from slmcnn import aot, backends
from slmcnn.backends import TorchBackend, auto_engine, create_backend
from slmcnn.backends import compiled as compiled_backend
from slmcnn.backends.compiled import AotBackend
from slmcnn.model import create_model


def tiny(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("slmcnn-tiny").eval()


def test_the_cache_key_follows_weights_precision_input_cpu_and_torch(monkeypatch, tiny_model_file):
    key = aot.package_key(slmcnn.load_model(tiny_model_file), "bf16")
    assert aot.package_key(slmcnn.load_model(tiny_model_file), "bf16") == key  # the same file, loaded again
    assert aot.package_key(tiny(seed=1), "bf16") != key
    assert aot.package_key(slmcnn.load_model(tiny_model_file), "fp32") != key
    assert aot.package_key(slmcnn.load_model(tiny_model_file), "bf16", np.uint16) != key
    monkeypatch.setattr(aot, "cpu_signature", lambda: "another CPU")
    assert aot.package_key(slmcnn.load_model(tiny_model_file), "bf16") != key
    monkeypatch.undo()
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    assert aot.package_key(slmcnn.load_model(tiny_model_file), "bf16") != key


def test_a_package_is_found_in_the_cache_folder_only_for_its_model(monkeypatch, tmp_path):
    monkeypatch.setenv("SLMCNN_CACHE", str(tmp_path / "cache"))
    model = tiny()
    assert aot.cached(model, "bf16") is None  # miss
    path = aot.package_path(model, "bf16")
    assert path.parent == tmp_path / "cache"
    path.parent.mkdir()
    path.write_bytes(b"a package")
    assert aot.cached(model, "bf16") == path  # hit
    assert aot.cached(tiny(seed=1), "bf16") is None and aot.cached(model, "fp32") is None


def test_auto_weighs_the_job_against_loading_or_compiling():
    assert auto_engine(None, is_cached=True, compile_seconds=60) == "compiled"  # the monitor: size unknown
    assert auto_engine(None, is_cached=False, compile_seconds=60) == "background"
    assert auto_engine(36, is_cached=True, compile_seconds=60) == "eager"  # one layer: loading costs more
    assert auto_engine(36 * 36, is_cached=True, compile_seconds=60) == "compiled"
    assert auto_engine(36 * 216, is_cached=False, compile_seconds=60) == "eager"  # compiling costs more
    assert auto_engine(36 * 5000, is_cached=False, compile_seconds=60) == "compile"
    assert auto_engine(36 * 5000, is_cached=False, compile_seconds=1e6) == "eager"


def test_create_backend_follows_the_rule(monkeypatch, tmp_path):
    made = []

    class Stub:
        def __init__(self, model, precision, background=False):
            made.append(background)

    monkeypatch.setenv("SLMCNN_CACHE", str(tmp_path))
    monkeypatch.setattr(compiled_backend, "AotBackend", Stub)
    monkeypatch.setattr(backends, "resolve_precision", lambda precision: "bf16")
    monkeypatch.setattr(backends, "amx_supported", lambda: True)  # elsewhere `auto` times the engines
    model = tiny()
    assert isinstance(create_backend(model, "auto", layers=2), TorchBackend)
    assert isinstance(create_backend(model, "torch"), TorchBackend)
    assert isinstance(create_backend(model, "auto"), Stub) and made[-1] is True  # size unknown: background
    assert isinstance(create_backend(model, "compiled"), Stub) and made[-1] is False
    aot.package_path(model, "bf16").write_bytes(b"a package")
    assert isinstance(create_backend(model, "auto"), Stub) and made[-1] is False  # cached: loaded
    assert isinstance(create_backend(model, "auto", patches=10_000), Stub) and made[-1] is False


@pytest.mark.slow
def test_a_compiled_package_is_loaded_from_the_cache_and_agrees_with_eager(monkeypatch, tmp_path):
    monkeypatch.setenv("SLMCNN_CACHE", str(tmp_path))
    model = tiny()
    patches = np.random.default_rng(0).integers(0, 255, (20, 128, 128, 3), dtype=np.uint8)
    first = AotBackend(model, "fp32")  # compiles
    assert aot.cached(model, "fp32") is not None and aot.compile_seconds() > 0

    def no_compiling(*args):
        raise AssertionError("compiled twice")

    monkeypatch.setattr(aot, "compile_package", no_compiling)
    again = AotBackend(model, "fp32")
    expected = TorchBackend(model, "fp32").probabilities(patches)
    for backend in (first, again):
        np.testing.assert_allclose(backend.probabilities(patches), expected, atol=1e-4)
    assert again.probabilities(patches.astype(np.uint16) * 257).shape == (20, 3)  # no package: eager


def test_half_written_packages_of_dead_processes_are_removed(tmp_path):
    import subprocess
    import sys

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".slmcnn-abc.{finished.stdout.strip()}.tmp.pt2"
    alive = tmp_path / f".slmcnn-abc.{__import__('os').getpid()}.tmp.pt2"
    package = tmp_path / "slmcnn-abc.pt2"
    for path in (dead, alive, package):
        path.write_bytes(b"x")
    assert aot.remove_abandoned(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and package.exists()
