import numpy as np
import pytest

from slmcnn import cli
from tests.conftest import run_cli
from tests.unit.test_cli import COMMANDS, parsed


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert "example:" in result.stdout and f"slmcnn {command}" in result.stdout


def one_line_error(result, code=2):
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("WARNING")]
    assert len(lines) == 1 and "error" in lines[0]  # warnings about the data may come first
    return lines[0]


def test_bad_training_inputs(tmp_path, write_image):
    assert "no such file" in one_line_error(run_cli("train", tmp_path / "nope", "--out", tmp_path / "r"))
    (tmp_path / "empty").mkdir()
    assert "empty" in one_line_error(run_cli("train", tmp_path / "empty", "--out", tmp_path / "r"))
    write_image("flat/a.png", np.zeros((128, 128, 3), np.uint8))
    assert "no class folders" in one_line_error(run_cli("train", tmp_path / "flat", "--out", tmp_path / "r"))
    (tmp_path / "l.csv").write_text("Image;Label\nflat/a.png;Spatter\n")
    assert "Spatter" in one_line_error(run_cli("train", tmp_path / "l.csv", "--out", tmp_path / "r"))
    for i in range(4):
        write_image(f"big/Powder/{i}.png", np.zeros((100, 100, 3), np.uint8))
    assert "--resize" in one_line_error(run_cli("train", tmp_path / "big", "--out", tmp_path / "r"))
    both = run_cli("train", tmp_path / "big", "--out", tmp_path / "r", "--turns", "--no-flips")
    assert "--no-flips" in one_line_error(both)


def test_bad_model_files(tmp_path, tiny_build):
    (tmp_path / "m.safetensors").write_bytes(b"garbage!" * 4)
    one_line_error(run_cli("evaluate", tmp_path / "m.safetensors", tiny_build))
    assert "not found" in one_line_error(run_cli("evaluate", tmp_path / "missing.safetensors", tiny_build))


def test_init_refuses_another_arch(tiny_build, tiny_model_file, tmp_path):
    args = ("train", tiny_build, "--out", tmp_path / "r", "--init", tiny_model_file, "--epochs", "1", "--quiet")
    message = one_line_error(run_cli(*args, "--arch", "slmcnn"))
    assert "--arch slmcnn" in message and "slmcnn-tiny" in message and "--init" in message
    assert not (tmp_path / "r").exists()


def option_actions(command):
    """The parser's actions of one command."""
    from slmcnn.options import build_parser

    parser = build_parser({name: (text, example) for name, (_, text, example) in cli.COMMANDS.items()})
    sub = next(a for a in parser._actions if a.dest == "command")
    return [a for a in sub.choices[command]._actions if a.dest != "help"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_a_one_line_help_that_shows_its_default(command):
    import argparse

    from slmcnn.options import library_default

    shown = run_cli(command, "--help").stdout.replace("\n", " ")
    shown = " ".join(shown.split())
    for action in option_actions(command):
        if action.help == argparse.SUPPRESS:
            continue
        assert action.help and len(action.help) <= 160, (action.dest, action.help)
        source = getattr(action, "library", None)
        default = library_default(*source) if source else action.default
        if source:
            assert action.default is None, f"{action.dest}: the library's default is written twice"
        if action.option_strings and default not in (None, False, [], ""):
            assert f"(default: {default})" in shown or "default" in action.help, (command, action.dest)


def test_library_defaults_come_from_the_settings_classes():
    from slmcnn.grading import GradeRules
    from slmcnn.monitoring.watch import MonitorConfig
    from slmcnn.train import TrainConfig

    train = " ".join(run_cli("train", "--help").stdout.split())
    assert f"(default: {TrainConfig.epochs})" in train and f"(default: {TrainConfig.lr})" in train
    monitor = " ".join(run_cli("monitor", "--help").stdout.split())
    assert f"unchanged (default: {MonitorConfig.settle})" in monitor
    assert f"(default: {GradeRules.persist}/{GradeRules.window})" in monitor
    args = parsed("monitor", "folder", "--db", "x.sqlite", "--alert-persist", "2/4", "--alert-sure", "0.8")
    from slmcnn.options import grade_rules

    assert grade_rules(args) == GradeRules(sure=0.8, persist=2, window=4)
    assert grade_rules(parsed("monitor", "folder", "--db", "x.sqlite")) == GradeRules()


def test_monitor_help_is_short():
    assert len(run_cli("monitor", "--help").stdout.splitlines()) <= 100  # 123 before issue 38


def test_an_option_missing_in_both_forms_is_one_line(tmp_path):
    assert "--db" in one_line_error(run_cli("report", "--out", tmp_path / "r.html"))
    assert "--out" in one_line_error(run_cli("synth", "--layers", "1"))
    assert "give one" in one_line_error(run_cli("report", tmp_path / "a.sqlite", "--db", tmp_path / "b.sqlite"))
