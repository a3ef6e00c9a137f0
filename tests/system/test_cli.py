from tests.conftest import run_process


def test_the_console_script_runs_in_its_own_process():
    result = run_process("--version")
    assert result.returncode == 0 and result.stdout.startswith("slmcnn ")
