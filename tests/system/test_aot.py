"""Compiled networks cached per model, CPU and torch version, trusted only with their record and
rebuilt otherwise; `auto`'s choice between eager, compiled and compiling for the next jobs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from slmcnn import aot
from slmcnn.aot import spawn_compile as spawn_detached  # before conftest stubs it for the other tests
from slmcnn.backends import TorchBackend
from slmcnn.backends.compiled import AotBackend
from tests.integration.test_aot import PATCHES
from tests.unit.test_aot import tiny


def test_one_process_compiles_a_package_at_a_time(monkeypatch, tmp_path):
    monkeypatch.setenv("SLMCNN_CACHE", str(tmp_path))
    model = tiny()
    path = aot.package_path(model, "fp32")
    assert aot.lock(path) and aot.compiler(path) == os.getpid()
    assert not aot.lock(path) and aot.compile_package(model, "fp32") is None  # busy: nothing compiled
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path.with_suffix(".lock").write_text(finished.stdout.strip())  # its compiler died
    assert aot.compiler(path) is None and aot.lock(path)


@pytest.mark.slow
def test_a_compiled_package_is_checked_recorded_and_then_loaded_from_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SLMCNN_CACHE", str(tmp_path))
    model = tiny()
    first = AotBackend(model, "fp32")  # compiles
    path = aot.cached(model, "fp32")
    assert path is not None and aot.compile_seconds() > 0
    assert json.loads(aot.record_path(path).read_text())["max_difference"] <= aot.TOLERANCE["fp32"]

    def no_compiling(*args):
        raise AssertionError("compiled twice")

    monkeypatch.setattr(aot, "compile_package", no_compiling)
    again = AotBackend(model, "fp32")
    expected = TorchBackend(model, "fp32").probabilities(PATCHES)
    for backend in (first, again):
        np.testing.assert_allclose(backend.probabilities(PATCHES), expected, atol=1e-4)
    assert again.probabilities(PATCHES.astype(np.uint16) * 257).shape == (20, 3)  # no package: eager


@pytest.mark.slow
def test_a_job_compiles_the_package_for_the_next_jobs_in_a_process_of_its_own(monkeypatch, tmp_path, tiny_model):
    monkeypatch.setenv("SLMCNN_CACHE", str(tmp_path))
    child = spawn_detached(tiny_model, "fp32", detach=True)
    assert child is not None and os.getsid(child.pid) == child.pid  # its own session: the job may end first
    assert child.wait(timeout=300) == 0 and aot.cached(tiny_model, "fp32") is not None


def test_half_written_packages_of_dead_processes_are_removed(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".slmcnn-abc.{finished.stdout.strip()}.tmp.pt2"
    alive = tmp_path / f".slmcnn-abc.{os.getpid()}.tmp.pt2"
    package = tmp_path / "slmcnn-abc.pt2"
    for path in (dead, alive, package):
        path.write_bytes(b"x")
    assert aot.remove_abandoned(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and package.exists()


@pytest.mark.slow
def test_the_texture_package_is_compiled_checked_and_agrees_with_eager(monkeypatch, tmp_path, tiny_model):
    from slmcnn.texture import DenseTexture

    monkeypatch.setenv("SLMCNN_CACHE", str(tmp_path))
    assert aot.main([str(tiny_model.source), "--precision", "fp32", "--stops", "2,3"]) == 0
    path = aot.cached(tiny_model, "fp32", stops=aot.TEXTURE_STOPS)
    assert path is not None and aot.cached(tiny_model, "fp32") is None  # the blocks alone
    assert json.loads(aot.record_path(path).read_text())["max_difference"] <= aot.TOLERANCE["fp32"]
    eager, compiled = DenseTexture(tiny_model, "fp32"), DenseTexture(tiny_model, "fp32")
    eager._looked = float("inf")  # never looks into the cache
    for side in ((300, 517), (768, 768)):
        layer = np.random.default_rng(side[0]).integers(0, 255, (*side, 3), dtype=np.uint8)
        expected = eager(layer)
        np.testing.assert_allclose(compiled(layer), expected, atol=1e-3 * float(np.abs(expected).max()))
    assert compiled.compiled is not None
