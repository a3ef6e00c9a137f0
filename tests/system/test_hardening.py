"""Issue #16: nothing overwritten, no layer lost, one clear line for every bad input. One test per
example of the issue, fault injection (read-only output, full disk, a slowly written layer)."""

import ast
import contextlib
import shutil
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from slmcnn import images
from tests.integration.test_hardening import layer_png, stored


def test_export_onto_a_real_full_tmpfs(tiny_model_file, tmp_path):
    """A 32 KB tmpfs in a private mount namespace (unshare -r -m: no root needed, nothing seen outside)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = f"mount -t tmpfs -o size=32k tmpfs {disk}"
    if not shutil.which("unshare") or subprocess.run(["unshare", "-r", "-m", "sh", "-c", mount]).returncode:
        pytest.skip("no private tmpfs here")
    script = (
        f"{mount} && echo old > {disk}/m.onnx && "
        f"{sys.executable} -m slmcnn export {tiny_model_file} --out {disk}/m.onnx --force; "
        f"echo exit=$? >&2; cat {disk}/m.onnx >&2; ls -A {disk} >&2"
    )
    done = subprocess.run(["unshare", "-r", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert "disk is full" in lines[0] and lines[1:] == ["exit=2", "old", "m.onnx"], done.stderr


def test_the_monitor_on_a_real_full_tmpfs_loses_no_layer(tiny_model_file, tmp_path):
    """Database and overlays on a 40 KB tmpfs: the monitor stops with one line; with room again it
    stores every layer exactly once."""
    disk, watch = tmp_path / "disk", tmp_path / "camera"
    disk.mkdir()
    watch.mkdir()
    mount = f"mount -t tmpfs -o size=40k tmpfs {disk}"
    if not shutil.which("unshare") or subprocess.run(["unshare", "-r", "-m", "sh", "-c", mount]).returncode:
        pytest.skip("no private tmpfs here")
    for i in range(4):
        layer_png(watch / f"{i + 1:05d}.png", i)
    monitor = (
        f"{sys.executable} -m slmcnn monitor {watch} --db {disk}/b.sqlite --out {disk}/live --model {tiny_model_file}"
        " --settle 0 --exit-when-idle 0.3 --backend torch > /dev/null"
    )
    query = "select file, status from layers order by number"
    script = (
        f"{mount} && {{ {monitor}; echo exit=$? >&2; }} && mount -o remount,size=50m tmpfs {disk} && "
        f"{{ {monitor}; echo exit=$? >&2; }} && "
        f"{sys.executable} -c \"import sqlite3; print(sqlite3.connect('{disk}/b.sqlite').execute('{query}').fetchall())\""
        f" && ls -A {disk}/live"
    )
    done = subprocess.run(["unshare", "-r", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    lines = done.stderr.splitlines()
    assert "Traceback" not in done.stderr and "full" in lines[0] and lines[1:] == ["exit=2", "exit=0"], done.stderr
    stored, *kept = done.stdout.splitlines()
    assert ast.literal_eval(stored) == [(f"{i + 1:05d}.png", "done") for i in range(4)]
    assert sorted(kept) == [f"{i + 1:05d}.overlay.png" for i in range(4)]  # no temporary files left


def test_sigterm_stops_the_monitor_without_blaming_the_layer(tiny_model_file, tmp_path):
    import signal

    watch, db = tmp_path / "camera", tmp_path / "b.sqlite"
    watch.mkdir()
    layer_png(watch / "00001.png")
    command = [sys.executable, "-m", "slmcnn", "monitor", str(watch), "--db", str(db), "--model", str(tiny_model_file)]
    child = subprocess.Popen([*command, "--backend", "torch", "--settle", "0"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.2)
        with contextlib.suppress(sqlite3.OperationalError):  # the monitor writing just then
            if db.exists() and stored(db):
                break
    child.send_signal(signal.SIGTERM)
    assert child.wait(60) == 130 and "interrupted" in child.stderr.read()
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from attempts").fetchone()[0] == 0


def test_a_fifo_named_like_a_layer_does_not_block(tmp_path, tiny_model_file, write_image):
    import os

    folder = tmp_path / "layers"
    write_image("layers/layer_0002.png", np.full((128, 128, 3), 120, np.uint8))
    os.mkfifo(folder / "layer_0001.png")
    assert images.list_images([folder]) == [folder / "layer_0002.png"]
    args = ["predict-layer", folder / "layer_0001.png", folder / "layer_0002.png", "--out", tmp_path / "out"]
    done = subprocess.run(
        [sys.executable, "-m", "slmcnn", *map(str, args), "--model", str(tiny_model_file), "--backend", "torch"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1 and "not a regular file" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr and (tmp_path / "out" / "layer_0002.json").is_file()
