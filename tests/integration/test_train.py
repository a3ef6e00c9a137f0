import csv
import json

import pytest

from tests.conftest import run_cli


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
