"""`auto` without AMX: the engines timed once per CPU, torch and model, the choice read after that.
Rates here are given, never measured: no test asserts a timing."""

import json

import pytest
import torch

from slmcnn import aot, backends
from slmcnn.backends import TorchBackend, choice, create_backend
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
