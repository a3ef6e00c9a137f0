import numpy as np
import pytest

from conftest import run_cli, run_process
from slmcnn import cli

COMMANDS = [
    "train",
    "evaluate",
    "synth",
    "predict-layer",
    "predict-patches",
    "export",
    "calibrate",
    "monitor",
    "report",
    "app",
]


def test_the_command_table_is_complete():
    assert sorted(cli.COMMANDS) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert "example:" in result.stdout and f"slmcnn {command}" in result.stdout


def test_the_console_script_runs_in_its_own_process():
    result = run_process("--version")
    assert result.returncode == 0 and result.stdout.startswith("slmcnn ")


def test_library_errors_name_the_commands_flags():
    from slmcnn.errors import SettingsError

    error = SettingsError("`method=adaptive` needs `precision=fp32`; `turns` needs `flips=False`, `resize=True`")
    assert str(error) == "method=adaptive needs precision=fp32; turns needs flips=False, resize=True"
    flags = {"precision": "--ig-precision", "flips=False": "--no-flips"}
    assert error.for_cli(flags) == "--method adaptive needs --ig-precision fp32; --turns needs --no-flips, --resize"


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
