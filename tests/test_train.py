import csv
import json

import pytest

from conftest import run_cli


def test_two_epoch_training_loss_falls_and_writes_everything(tiny_build, tmp_path):
    out = tmp_path / "run"
    result = run_cli(
        "train",
        tiny_build,
        "--out",
        out,
        "--arch",
        "slmcnn-tiny",
        "--epochs",
        "2",
        "--lr",
        "1e-3",
        "--batch",
        "8",
        "--quiet",
        "--precision",
        "fp32",
        "--schedule",
        "cosine",
    )
    assert result.returncode == 0, result.stderr
    for name in (
        "model.safetensors",
        "history.csv",
        "accuracy.png",
        "loss.png",
        "confusion_matrix.png",
        "report.json",
        "report.md",
    ):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert len(rows) == 2
    assert float(rows[1]["loss"]) < float(rows[0]["loss"])
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-3, 5e-4])  # cosine over 2 epochs
    assert "epoch   2" in result.stdout


def test_training_is_reproducible(tiny_build, tmp_path):
    args = ("--arch", "slmcnn-tiny", "--epochs", "1", "--quiet", "--precision", "fp32", "--seed", "4")
    for name in ("a", "b"):
        assert run_cli("train", tiny_build, "--out", tmp_path / name, *args).returncode == 0
    history = [open(tmp_path / n / "history.csv").read().split("\n")[1].split(",")[:5] for n in "ab"]
    assert history[0] == history[1]


def test_runs_report_mean_and_std_and_fine_tune(tiny_build, tmp_path):
    out = tmp_path / "runs"
    result = run_cli(
        "train", tiny_build, "--out", out, "--arch", "slmcnn-tiny", "--epochs", "1", "--runs", "2", "--quiet"
    )
    assert result.returncode == 0, result.stderr
    table = (out / "report.md").read_text()
    assert "±" in table and "Macro Average" in table and "Accuracy" in table
    assert len(json.loads((out / "report.json").read_text())) == 2
    tuned = run_cli(
        "train",
        tiny_build,
        "--out",
        tmp_path / "ft",
        "--init",
        out / "run-1" / "model.safetensors",
        "--epochs",
        "1",
        "--quiet",
    )
    assert tuned.returncode == 0, tuned.stderr


def test_evaluate_json(tiny_build, tiny_model_file, tmp_path):
    result = run_cli("evaluate", tiny_model_file, tiny_build, "--format", "json", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["classes"] == ["Powder", "Object", "Error"]
    assert set(report["table"]) >= {"Powder", "Object", "Error", "macro avg", "weighted avg"}
    assert sum(map(sum, report["confusion_matrix"])) == report["support"]["macro avg"]
    assert (tmp_path / "confusion_matrix.png").is_file()


def test_random_flips_flip_whole_patches_about_half_the_time():
    import numpy as np
    import torch

    from slmcnn.train import random_flips

    rng = np.random.default_rng(1)
    patches = rng.integers(0, 255, (400, 6, 6, 3), dtype=np.uint8)
    original = patches.copy()
    flipped = random_flips(torch.from_numpy(patches), torch.Generator().manual_seed(0)).numpy()
    assert np.array_equal(patches, original)  # the caller's array is left alone
    kinds = []
    for before, after in zip(patches, flipped):
        options = {
            "none": before,
            "lr": before[:, ::-1],
            "ud": before[::-1],
            "both": before[::-1, ::-1],
        }
        kinds.append(next(k for k, v in options.items() if np.array_equal(v, after)))
    counts = {k: kinds.count(k) for k in ("none", "lr", "ud", "both")}
    assert all(60 < c < 140 for c in counts.values()), counts


def test_random_turns_give_all_eight_views_equally_often():
    import numpy as np
    import torch

    from slmcnn.train import random_flips

    rng = np.random.default_rng(2)
    patches = rng.integers(0, 255, (800, 5, 5, 3), dtype=np.uint8)
    turned = random_flips(torch.from_numpy(patches), torch.Generator().manual_seed(0), turns=True).numpy()
    counts = np.zeros(8, int)
    for before, after in zip(patches, turned):
        views = [np.rot90(v, k) for v in (before, before[:, ::-1]) for k in range(4)]
        matches = [i for i, v in enumerate(views) if np.array_equal(v, after)]
        assert len(matches) == 1
        counts[matches[0]] += 1
    assert all(60 < c < 140 for c in counts), counts


def test_impossible_training_settings_are_refused_by_the_config():
    import pytest

    from slmcnn.errors import SettingsError
    from slmcnn.train import TrainConfig

    with pytest.raises(SettingsError, match="flips=False"):  # API terms; the CLI says --no-flips
        TrainConfig(flips=False, turns=True)
    with pytest.raises(SettingsError, match="cosine"):
        TrainConfig(schedule="step")
    with pytest.raises(SettingsError, match="device"):
        TrainConfig(device="gpu")
    with pytest.raises(SettingsError, match="time_limit"):
        TrainConfig(time_limit=0)


def test_cuda_without_a_gpu_is_one_clear_line(tiny_build, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = run_cli("train", tiny_build, "--out", tmp_path / "run", "--arch", "slmcnn-tiny", "--device", "cuda")
    assert result.returncode == 2
    assert "sees no CUDA GPU" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_time_limit_stops_before_an_epoch_that_would_overrun(tiny_build, tmp_path):
    out = tmp_path / "run"
    args = ("--arch", "slmcnn-tiny", "--epochs", "5", "--quiet", "--precision", "fp32", "--time-limit", "0.0001")
    result = run_cli("train", tiny_build, "--out", out, *args)
    assert result.returncode == 0, result.stderr
    assert "time limit: stopped after 1 of 5 epochs" in result.stdout + result.stderr
    assert len(list(csv.DictReader(open(out / "history.csv")))) == 1
    assert json.loads((out / "report.json").read_text())["accuracy"] >= 0  # the best model is still tested and saved
    assert (out / "model.safetensors").is_file()


def test_cosine_schedule_spans_the_epochs_the_time_limit_allows():
    from slmcnn.train import TrainConfig, _epochs_in_time

    config = TrainConfig(epochs=30, schedule="cosine", time_limit=1.0)
    assert _epochs_in_time(config, [], 0.0) == 30  # nothing measured yet
    assert _epochs_in_time(config, [{"seconds": 10.0}], 10.0) == 6  # 50 s left, 10 s an epoch
    assert _epochs_in_time(config, [{"seconds": 5.0}, {"seconds": 15.0}], 15.0) == 6  # by the slowest
    assert _epochs_in_time(config, [{"seconds": 70.0}], 70.0) == 2  # over already: ends at the next
    assert _epochs_in_time(TrainConfig(epochs=4, time_limit=60.0), [{"seconds": 1.0}], 1.0) == 4
