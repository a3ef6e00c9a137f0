"""`slmcnn app`'s API: every route, refused paths and tokens, labels that survive a restart,
review, export that `slmcnn train` splits by layer, and a one-epoch fine-tune of a tiny model."""

import socket
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from tests.integration.test_app import TOKEN, env_fixture  # noqa: F401 (the env fixture)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_app_command_serves_and_prints_its_url(env, tmp_path):
    import subprocess
    import sys
    import urllib.request

    port = free_port()
    command = [sys.executable, "-m", "slmcnn", "app", "--db", env["db"], "--model", env["model"], "--port", port]
    command += ["--labels", tmp_path / "labels.sqlite"]
    process = subprocess.Popen([str(c) for c in command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith(f"slmcnn app: http://127.0.0.1:{port}/"), line
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/sets", timeout=5) as response:
                    assert b'"b0-1"' in response.read()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("the app did not answer")
    finally:
        process.terminate()
        process.wait(10)
