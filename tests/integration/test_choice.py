"""`auto` without AMX: the engines timed once per CPU, torch and model, the choice read after that.
Rates here are given, never measured: no test asserts a timing."""

import json

import pytest
import torch

from slmcnn import aot, backends
from slmcnn.backends import TorchBackend, choice, create_backend
from slmcnn.backends.__main__ import main as time_engines
from slmcnn.backends.choice import spawn_timing as real_spawn_timing  # the session's tests run without it
from tests.unit.test_choice import Stub, engines_fixture, tiny  # noqa: F401 (the engines fixture)


def test_the_fastest_engine_that_agrees_is_chosen_once_and_read_after(engines):
    candidates, timed = engines
    model = tiny()
    first = choice.choose(model, candidates(model), set(candidates(model)))
    assert first.chosen == "onnx-int8" and len(timed) == 1
    record = json.loads(aot.choice_path(model).read_text())
    assert record["agreement"] == {"onnx-int8": 1.0}  # only what beat every fp32 engine is checked
    again = choice.choose(model, candidates(model), set(candidates(model)))
    assert again.chosen == "onnx-int8" and len(timed) == 1  # read, not measured


def test_a_precision_given_limits_the_candidates(engines):
    candidates, _ = engines
    model = tiny()
    assert choice.choose(model, candidates(model), {"onnx-fp32"}).chosen == "onnx-fp32"


@pytest.mark.parametrize("change", ["cpu", "torch", "model"])
def test_another_cpu_torch_or_model_is_measured_anew(engines, monkeypatch, change):
    candidates, timed = engines
    model = tiny()
    choice.choose(model, candidates(model), set(candidates(model)))
    if change == "cpu":
        monkeypatch.setattr(aot, "cpu_signature", lambda: "another CPU")
    elif change == "torch":
        monkeypatch.setattr(torch, "__version__", "9.9.9")
    else:
        model = tiny(seed=1)
    choice.choose(model, candidates(model), set(candidates(model)))
    assert len(timed) == 2


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        json.dumps({"rates": {"onnx-fp32": 1.0}}),  # no identity
        "RECORD OF ANOTHER CPU",
        "RECORD WITHOUT RATES",
    ],
)
def test_a_corrupt_or_foreign_record_is_measured_again_not_a_crash(engines, caplog, content):
    candidates, timed = engines
    model = tiny()
    path = aot.choice_path(model)
    path.parent.mkdir(parents=True)
    identity = aot.choice_identity(model)
    if content == "RECORD OF ANOTHER CPU":
        content = json.dumps({"rates": {"onnx-fp32": 1.0}, "agreement": {}, **identity, "cpu": "another"})
    elif content == "RECORD WITHOUT RATES":
        content = json.dumps({"rates": [], "agreement": {}, **identity})
    path.write_text(content)
    assert choice.choose(model, candidates(model), set(candidates(model))).chosen == "onnx-int8"
    assert len(timed) == 1 and "measuring again" in caplog.text
    assert json.loads(path.read_text())["rates"]["onnx-int8"] == 300.0  # rewritten whole


def test_an_engine_that_cannot_run_here_is_left_out(engines):
    candidates, _ = engines
    model = tiny()
    made = candidates(model)

    def broken():
        raise RuntimeError("no compiler")

    made["compiled-fp32"] = broken
    assert choice.choose(model, made, set(made)).chosen == "onnx-int8"
    assert "compiled-fp32" not in json.loads(aot.choice_path(model).read_text())["rates"]


def test_auto_measures_without_amx_and_says_what_it_chose(engines, monkeypatch, caplog):
    caplog.set_level("INFO", logger="slmcnn")
    _, timed = engines
    monkeypatch.setattr(backends, "amx_supported", lambda: False)
    monkeypatch.setattr(backends, "_compiled", lambda model, precision, patches: Stub(f"compiled-{precision}", model))
    monkeypatch.setattr(backends, "_onnx", lambda model, precision, patches: Stub(f"onnx-{precision}", model))
    model = tiny()
    assert isinstance(create_backend(model, "auto", layers=2), TorchBackend) and timed == []  # too small to gain
    assert create_backend(model, "auto").chosen == "onnx-int8"
    assert "auto: onnx-int8, the fastest here" in caplog.text
    assert create_backend(model, "auto", layers=2).chosen == "onnx-int8"  # timed once: read by any job
    assert create_backend(model, "auto", "fp32").chosen == "compiled-fp32"  # the same record, fp32 only
    assert len(timed) == 1
    monkeypatch.setattr(backends, "amx_supported", lambda: True)
    monkeypatch.setattr(backends, "resolve_precision", lambda precision: "bf16")
    assert isinstance(create_backend(model, "auto", layers=1), TorchBackend)  # AMX: bf16, no timing
    assert len(timed) == 1


def _stub_engines(monkeypatch):
    monkeypatch.setattr(backends, "amx_supported", lambda: False)
    monkeypatch.setattr(backends, "_compiled", lambda model, precision, patches: Stub(f"compiled-{precision}", model))
    monkeypatch.setattr(backends, "_onnx", lambda model, precision, patches: Stub(f"onnx-{precision}", model))


def test_a_job_too_short_to_gain_runs_eager_and_has_the_engines_timed_after_it(engines, monkeypatch, caplog):
    """Timing compiles packages (a minute or two): a first job that would not gain it back runs
    eager and leaves the timing to a process of its own; a job long enough times them in it."""
    caplog.set_level("INFO", logger="slmcnn")
    _, timed = engines
    _stub_engines(monkeypatch)
    spawned = []
    monkeypatch.setattr(choice, "spawn_timing", lambda model, precision: spawned.append(precision) or object())
    model = tiny()
    assert isinstance(create_backend(model, "auto", layers=36), TorchBackend)
    assert spawned == ["auto"] and timed == [] and "timed once on this CPU after it" in caplog.text
    assert create_backend(model, "auto", patches=10**7).chosen == "onnx-int8" and len(timed) == 1  # gains: in it
    assert create_backend(model, "auto", layers=36).chosen == "onnx-int8" and spawned == ["auto"]  # then read
    monkeypatch.setattr(choice, "spawn_timing", lambda model, precision: None)  # no model file: timed in the job
    assert create_backend(tiny(seed=2), "auto", layers=36).chosen == "onnx-int8" and len(timed) == 2


def test_the_timing_process_waits_for_the_job_then_times_once(engines, monkeypatch, tiny_model_file):
    import subprocess
    import sys
    import threading

    _, timed = engines
    _stub_engines(monkeypatch)
    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"])
    threading.Thread(target=job.wait, daemon=True).start()
    assert time_engines([str(tiny_model_file), "--after", str(job.pid)]) == 0
    assert job.poll() is not None and len(timed) == 1  # after the job, not beside it
    assert time_engines([str(tiny_model_file)]) == 0 and len(timed) == 1  # timed once


def test_the_timing_process_is_started_for_a_model_file_only(monkeypatch, tiny_model_file, tmp_path):
    import os

    monkeypatch.setenv("SLMCNN_CACHE", str(tmp_path / "cache"))
    started = []
    monkeypatch.setattr(aot, "detached", lambda command: started.append(command) or object())
    monkeypatch.setattr(choice, "_SPAWNED", {})
    monkeypatch.setattr(choice, "spawn_timing", real_spawn_timing)
    model = tiny()
    assert choice.spawn_timing(model) is None and started == []  # a model without a file
    model.source = tiny_model_file
    assert choice.spawn_timing(model, "fp32") is not None
    assert choice.spawn_timing(model, "fp32") is not None and len(started) == 1  # one per model and process
    expected = ["-m", "slmcnn.backends", str(tiny_model_file), "--precision", "fp32", "--after", str(os.getpid())]
    assert started[0][1:] == expected


def test_the_timing_process_says_a_missing_model_file_in_one_line(tmp_path, capsys):
    assert time_engines([str(tmp_path / "missing.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m slmcnn.backends: error:") and err.count("\n") == 1
