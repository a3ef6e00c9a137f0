"""`slmcnn app`'s API: every route, refused paths and tokens, labels that survive a restart,
review, export that `slmcnn train` splits by layer, and a one-epoch fine-tune of a tiny model."""

import os
import shutil
import socket
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from slmcnn.app.server import create_app  # noqa: E402
from slmcnn.app.workspace import AppConfig  # noqa: E402
from tests.integration.test_app import TOKEN, monitored_build


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(tiny_build, tiny_model_file, error_model_file, tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    db = monitored_build(tiny_build, error_model_file, root, 4)
    data = root / "data"
    (data / "photos").mkdir(parents=True)
    for path in sorted((tiny_build / "layers").glob("*.png"))[4:7]:
        shutil.copy(path, data / "photos" / path.name)
    (root / "secret").mkdir()
    (root / "secret" / "00001.png").write_bytes((tiny_build / "layers" / "00001.png").read_bytes())
    os.symlink(root / "secret", data / "escape")
    config = AppConfig([db], [data], tiny_model_file, labels=root / "labels.sqlite", token=TOKEN, user="tester")
    client = TestClient(create_app(config), base_url="http://127.0.0.1:8765")
    return {"root": root, "db": db, "data": data, "client": client, "config": config, "model": tiny_model_file}


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
