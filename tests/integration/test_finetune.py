"""Fine-tuning that keeps what the model knew: the L2-SP anchor of `train --anchor`."""

import pytest

from tests.conftest import run_cli


def drift(a, b) -> float:
    from slmcnn.checkpoint import load_model

    first, second = load_model(a)[0], load_model(b)[0]
    return sum(float(((p - q) ** 2).sum()) for p, q in zip(first.parameters(), second.parameters()))


def test_the_anchor_holds_a_fine_tune_near_the_model_it_started_from(tiny_build, tiny_model_file, tmp_path):
    moved = {}
    for anchor in ("0", "1000"):
        out = tmp_path / f"anchor-{anchor}"
        args = ("train", tiny_build, "--out", out, "--init", tiny_model_file, "--epochs", "2", "--lr", "0.01")
        done = run_cli(*args, "--batch", "4", "--anchor", anchor, "--patience", "5", "--quiet")
        assert done.returncode == 0, done.stderr
        moved[anchor] = drift(tiny_model_file, out / "model.safetensors")
    assert 0 < moved["1000"] < moved["0"] / 4


@pytest.mark.parametrize("args", [("--anchor", "-1"), ("--anchor", "nan")])
def test_anchor_settings_are_checked(tiny_build, tiny_model_file, tmp_path, args):
    done = run_cli("train", tiny_build, "--out", tmp_path / "r", "--init", tiny_model_file, *args, "--quiet")
    assert done.returncode != 0 and "anchor" in done.stderr and "Traceback" not in done.stderr
    alone = run_cli("train", tiny_build, "--out", tmp_path / "r2", "--anchor", "1", "--quiet")
    assert alone.returncode != 0 and "init" in alone.stderr
