"""train --nproc: two processes (DDP, gloo on the CPU) train one run folder, written once."""

import csv

from slmcnn.checkpoint import load_model
from tests.conftest import run_cli
from tests.integration.test_distributed import ARGS


def test_two_processes_write_one_run_as_one_process_does(tiny_build, tmp_path):
    assert run_cli("train", tiny_build, "--out", tmp_path / "one", *ARGS).returncode == 0
    together = run_cli("train", tiny_build, "--out", tmp_path / "two", *ARGS, "--nproc", "2")
    assert together.returncode == 0, together.stderr
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert together.stdout.count("epoch   1 ") == 1 and together.stdout.count("epoch   2 ") == 1  # rank 0 logs
    rows = list(csv.DictReader(open(tmp_path / "two" / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(0 <= float(r["val_accuracy"]) <= 1 for r in rows)
    model, info = load_model(tmp_path / "two" / "model.safetensors")
    assert info.training["batch"] == 8  # the batch of all processes together, as asked


def test_two_processes_train_the_same_network_each_time(tiny_build, tmp_path):
    for name in ("a", "b"):
        assert run_cli("train", tiny_build, "--out", tmp_path / name, *ARGS, "--nproc", "2").returncode == 0
    history = [open(tmp_path / n / "history.csv").read().split("\n")[1].split(",")[:5] for n in "ab"]
    assert history[0] == history[1]
