"""Compiled networks cached per model, CPU and torch version, trusted only with their record and
rebuilt otherwise; `auto`'s choice between eager, compiled and compiling for the next jobs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import slmcnn
from slmcnn import aot, backends
from slmcnn.backends import TorchBackend, auto_engine, choice, create_backend
from slmcnn.backends import compiled as compiled_backend
from slmcnn.model import create_model


def tiny(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("slmcnn-tiny").eval()


def test_the_cache_key_follows_weights_precision_input_cpu_and_torch(monkeypatch, tiny_model_file, tiny_model):
    key = aot.package_key(tiny_model, "bf16")
    assert aot.package_key(slmcnn.load_model(tiny_model_file), "bf16") == key  # the same file, loaded again
    assert aot.package_key(tiny(seed=1), "bf16") != key
    assert aot.package_key(tiny_model, "fp32") != key
    assert aot.package_key(tiny_model, "bf16", np.uint16) != key
    monkeypatch.setattr(aot, "cpu_signature", lambda: "another CPU")
    assert aot.package_key(tiny_model, "bf16") != key
    monkeypatch.undo()
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    assert aot.package_key(tiny_model, "bf16") != key


def recorded(model, precision="bf16", **changed) -> Path:
    """A package file and its record, as compile_package leaves them (`changed`: another identity)."""
    path = aot.package_path(model, precision)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"a package")
    made = {"identity": {**aot.identity(model, precision), **changed}, "max_difference": 0.0, "seconds": 1.0}
    aot.record_path(path).write_text(json.dumps(made))
    return path


def test_a_package_is_trusted_only_with_the_record_of_exactly_this(monkeypatch, tmp_path):
    monkeypatch.setenv("SLMCNN_CACHE", str(tmp_path / "cache"))
    model = tiny()
    assert aot.cached(model, "bf16") is None  # miss
    path = recorded(model)
    assert path.parent == tmp_path / "cache" and aot.cached(model, "bf16") == path  # hit
    assert aot.cached(tiny(seed=1), "bf16") is None and aot.cached(model, "fp32") is None
    aot.record_path(path).unlink()
    assert aot.cached(model, "bf16") is None  # no record: half-copied, or an older slmcnn's
    recorded(model, torch="2.0.0")
    assert aot.cached(model, "bf16") is None  # stale: another torch's
    recorded(model, cpu="another CPU")
    assert aot.cached(model, "bf16") is None  # foreign
    aot.record_path(path).write_text("{not json")
    assert aot.cached(model, "bf16") is None


def test_auto_weighs_the_job_against_loading_or_compiling():
    assert auto_engine(None, is_cached=True, compile_seconds=60) == "compiled"  # the monitor: size unknown
    assert auto_engine(None, is_cached=False, compile_seconds=60) == "background"
    assert auto_engine(36, is_cached=True, compile_seconds=60) == "eager"  # one layer: loading costs more
    assert auto_engine(36 * 36, is_cached=True, compile_seconds=60) == "compiled"
    assert auto_engine(36, is_cached=False, compile_seconds=60) == "eager"  # compiled, it would save nothing
    assert auto_engine(36 * 216, is_cached=False, compile_seconds=60) == "ahead"  # eager now, compiled for the next
    assert auto_engine(36 * 5000, is_cached=False, compile_seconds=60) == "compile"
    assert auto_engine(36 * 5000, is_cached=False, compile_seconds=1e6) == "ahead"


@pytest.fixture
def amx(monkeypatch, tmp_path):
    """`auto` as on a CPU with AMX, compiled engines stubbed; lists the compilations started."""
    made, spawned = [], []

    class Stub:
        def __init__(self, model, precision, background=False):
            made.append(background)

    monkeypatch.setenv("SLMCNN_CACHE", str(tmp_path))
    monkeypatch.setattr(compiled_backend, "AotBackend", Stub)
    monkeypatch.setattr(backends, "resolve_precision", lambda precision: "bf16")
    monkeypatch.setattr(backends, "amx_supported", lambda: True)  # elsewhere `auto` times the engines
    monkeypatch.setattr(aot, "spawn_compile", lambda model, precision, detach=False: spawned.append(detach))
    return Stub, made, spawned


def test_create_backend_follows_the_rule(amx):
    Stub, made, spawned = amx
    model = tiny()
    assert isinstance(create_backend(model, "auto", layers=2), TorchBackend) and spawned == []
    assert isinstance(create_backend(model, "torch"), TorchBackend)
    assert isinstance(create_backend(model, "auto"), Stub) and made[-1] is True  # size unknown: background
    assert isinstance(create_backend(model, "compiled"), Stub) and made[-1] is False
    assert isinstance(create_backend(model, "auto", layers=216), TorchBackend) and spawned == [True]  # ahead
    recorded(model)
    assert isinstance(create_backend(model, "auto"), Stub) and made[-1] is False  # cached: loaded
    assert isinstance(create_backend(model, "auto", layers=216), Stub) and made[-1] is False
    assert isinstance(create_backend(model, "auto", patches=10_000), Stub) and spawned == [True]


def test_slmcnn_compile_0_stops_auto_compiling_and_timing(amx, monkeypatch):
    Stub, made, spawned = amx
    model = tiny()
    monkeypatch.setenv("SLMCNN_COMPILE", "0")
    monkeypatch.setattr(choice, "measure", lambda *args: pytest.fail("timed the engines"))
    for layers in (None, 216, 100_000):
        assert isinstance(create_backend(model, "auto", layers=layers), TorchBackend)
    monkeypatch.setattr(backends, "amx_supported", lambda: False)
    assert isinstance(create_backend(model, "auto"), TorchBackend) and made == spawned == []
    assert isinstance(create_backend(model, "compiled"), Stub)  # asked for by name: compiled
    recorded(model)
    assert isinstance(create_backend(model, "auto"), Stub)  # one in the cache is used


def test_the_texture_blocks_have_a_package_of_their_own(monkeypatch, tmp_path):
    monkeypatch.setenv("SLMCNN_CACHE", str(tmp_path))
    model = tiny()
    network = aot.package_key(model, "bf16")
    assert aot.package_key(model, "bf16", stops=(2, 3)) not in (network, aot.package_key(model, "bf16", stops=(3,)))
    recorded(model)  # the network's package is no texture's
    assert aot.cached(model, "bf16", stops=(2, 3)) is None
    path = aot.package_path(model, "bf16", stops=(2, 3))
    path.write_bytes(b"a package")
    made = {"identity": aot.identity(model, "bf16", stops=(2, 3)), "max_difference": 0.0, "seconds": 1.0}
    aot.record_path(path).write_text(json.dumps(made))
    assert aot.cached(model, "bf16", stops=(2, 3)) == path and aot.cached(model, "bf16", stops=(3,)) is None


@pytest.mark.parametrize("text", ["", "a", "0,2", "3,2", "2,2"])
def test_python_m_slmcnn_aot_says_what_stops_are(text, capsys):
    with pytest.raises(SystemExit) as exit:
        aot.main(["--stops", text])
    assert exit.value.code == 2 and "stops are" in capsys.readouterr().err
