"""train --nproc: two processes (DDP, gloo on the CPU) train one run folder, written once."""

import pytest

from tests.conftest import run_cli

ARGS = ("--arch", "slmcnn-tiny", "--epochs", "2", "--lr", "1e-3", "--batch", "8", "--quiet", "--precision", "fp32")


@pytest.mark.parametrize(
    "flags, message", [(("--nproc", "0"), "--nproc must be a whole number at least 1"), (("--nproc", "x"), "")]
)
def test_impossible_process_counts_are_refused(tiny_build, tmp_path, flags, message):
    result = run_cli("train", tiny_build, "--out", tmp_path / "run", *ARGS, *flags)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "run").exists()
