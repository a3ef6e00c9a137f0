import pytest

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
    "teach",
    "app",
]


def test_the_command_table_is_complete():
    assert sorted(cli.COMMANDS) == sorted(COMMANDS)


def test_library_errors_name_the_commands_flags():
    from slmcnn.errors import SettingsError

    error = SettingsError("`method=adaptive` needs `precision=fp32`; `turns` needs `flips=False`, `resize=True`")
    assert str(error) == "method=adaptive needs precision=fp32; turns needs flips=False, resize=True"
    flags = {"precision": "--ig-precision", "flips=False": "--no-flips"}
    assert error.for_cli(flags) == "--method adaptive needs --ig-precision fp32; --turns needs --no-flips, --resize"


def parsed(*argv):
    """The arguments as the command sees them (earlier versions' forms taken), without running it."""
    from slmcnn.options import build_parser, take_old_forms

    args = build_parser({name: (text, example) for name, (_, text, example) in cli.COMMANDS.items()}).parse_args(argv)
    take_old_forms(args)
    return args


def test_one_vocabulary_and_the_earlier_forms_still_work():
    assert parsed("report", "--db", "b.sqlite").db == parsed("report", "b.sqlite").db == "b.sqlite"
    assert parsed("export", "m.safetensors").model == parsed("export", "--model", "m.safetensors").model
    assert parsed("synth", "builds/x").out == parsed("synth", "--out", "builds/x").out == "builds/x"
    old, new = (
        parsed("evaluate", "m.safetensors", "d1", "d2"),
        parsed("evaluate", "d1", "d2", "--model", "m.safetensors"),
    )
    assert (old.model, old.data) == (new.model, new.data) == ("m.safetensors", ["d1", "d2"])
    shipped = parsed("evaluate", "d1", "d2")
    assert (shipped.model, shipped.data) == (None, ["d1", "d2"])  # no model file given: the shipped model


@pytest.mark.parametrize(("code", "leaves"), [(130, "at once"), (0, "sys.exit"), (2, "sys.exit")])
def test_the_console_script_leaves_at_once_after_an_interrupt(monkeypatch, code, leaves):
    """After Ctrl-C or SIGTERM the process skips native teardown (ONNX Runtime's or OpenMP's
    thread pools torn down while a thread works abort it: SIGABRT instead of 130)."""
    import slmcnn.__main__ as entry

    class Left(Exception):
        pass

    def at_once(status):
        raise Left(status)

    monkeypatch.setattr(entry, "main", lambda: code)
    monkeypatch.setattr(entry, "one_blas_thread", lambda: None)  # not this test process's
    monkeypatch.setattr(entry.os, "_exit", at_once)
    with pytest.raises((Left, SystemExit)) as how:
        entry.run()
    assert (how.type is Left) == (leaves == "at once") and how.value.args[0] == code


def test_the_console_script_runs_numpys_blas_on_one_thread():
    """OpenBLAS's idle threads spin after each of numpy's small products: the command keeps one."""
    import os
    import subprocess
    import sys

    probe = (
        "import numpy; from threadpoolctl import threadpool_info; from slmcnn.__main__ import one_blas_thread\n"
        "threads = lambda: [i['num_threads'] for i in threadpool_info() if i['internal_api'] == 'openblas']\n"
        "before = threads(); one_blas_thread(); print(before, threads())"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env).stdout
    if out.startswith("[] "):
        pytest.skip("this numpy does not use OpenBLAS")
    assert out.split() == ["[2]", "[1]"]
