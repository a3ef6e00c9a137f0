"""predict-layer --ray: a local Ray cluster on loopback gives what the local path gives, file for file."""

import importlib.util
import sys

import pytest

from tests.conftest import run_cli

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="the ray extra is not installed")


def test_without_ray_one_line_names_the_extra(tiny_build, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an installation without the extra finds
    result = run_cli("predict-layer", tiny_build / "layers", "--out", tmp_path / "out", "--ray")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "slmcnn predict-layer: error: --ray needs Ray Data, which is not installed: pip install 'slmcnn[ray]'"
    ]


@needs_ray
@pytest.mark.parametrize(
    "flags, message",
    [
        (("--ray=127.0.0.1:1",), "--ray 127.0.0.1:1: no Ray cluster answers there"),
        (("--ray", "--adapt", "5"), "--adapt learns each build layer after layer"),
        (("--ray", "--html"), "--html is written by predict-layer without --ray only"),
        (("--ray", "--stride", "500"), "--stride 500 is larger than --patch 128"),
    ],
)
def test_impossible_ray_settings_are_one_line_before_any_worker(tiny_build, tiny_model_file, tmp_path, flags, message):
    result = run_cli("predict-layer", tiny_build / "layers", "--model", tiny_model_file, "--out", tmp_path, *flags)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
