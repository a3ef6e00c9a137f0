"""Builds and the one-monitor lock keyed by machine and folder (#40 item 1): the computers of a shop
name their camera folders alike (/data/camera on each) and share one database."""

import socket

import cv2
import numpy as np
import pytest

from slmcnn.errors import DatabaseError
from slmcnn.monitoring import Database
from tests.conftest import run_cli, sql_rows


def photos(folder, names: list[str]) -> None:
    folder.mkdir(exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    for shade, name in enumerate(names):
        cv2.imwrite(str(folder / name), np.full((128, 128, 3), 100 + 10 * shade, np.uint8))


def monitor(folder, database, model, *machine: str):
    args = ("monitor", folder, "--db", database, "--model", model, "--backend", "torch", "--settle", "0")
    done = run_cli(*args, *machine, "--exit-when-idle", "0.3")
    assert done.returncode == 0, done.stderr
    return done


def by_build(database) -> list[tuple]:
    query = "SELECT b.id, b.machine, count(l.id) FROM builds b LEFT JOIN layers l ON l.build_id = b.id"
    return sql_rows(database, f"{query} GROUP BY b.id, b.machine ORDER BY b.id")


def test_two_computers_with_the_same_camera_folder_keep_their_own_builds(database, tiny_model_file, tmp_path):
    """Host A's 3 layers, then host B's 4 in a folder at the same path (time-stamped names, as the
    issue found them): B's go into a build of B's, A's build keeps its 3 and A goes on with it."""
    camera = tmp_path / "camera"
    photos(camera, [f"20260301_10000{i}.png" for i in range(3)])
    monitor(camera, database, tiny_model_file, "--machine", "host-a")
    photos(camera, [f"20260302_08000{i}.png" for i in range(4)])
    monitor(camera, database, tiny_model_file, "--machine", "host-b")
    assert by_build(database) == [(1, "host-a", 3), (2, "host-b", 4)]
    photos(camera, [f"20260301_10000{i}.png" for i in range(4)])  # host A's folder again, one layer more
    monitor(camera, database, tiny_model_file, "--machine", "host-a")
    assert by_build(database) == [(1, "host-a", 4), (2, "host-b", 4)]
    report = run_cli("report", database, "--out", tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert report.returncode == 0 and "on host-a" in page and "on host-b" in page


def test_the_lock_is_per_machine_and_folder(database, tmp_path):
    db = Database(database)
    held = db.lock("/data/camera", "host-a")
    try:
        db.lock("/data/camera", "host-b").release()  # another computer's folder of the same path
        db.lock("/data/other", "host-a").release()
        with pytest.raises(DatabaseError, match="as machine 'host-a'.*--machine"):
            db.lock("/data/camera", "host-a")
    finally:
        held.release()


def test_the_machine_is_the_host_name_unless_named(database, tiny_model_file, tmp_path):
    photos(tmp_path / "camera", ["00001.png"])
    done = monitor(tmp_path / "camera", database, tiny_model_file)
    assert f"as machine {socket.gethostname()}" in done.stdout
    assert sql_rows(database, "SELECT machine FROM builds") == [(socket.gethostname(),)]


def test_builds_stored_without_a_machine_are_taken_up_by_the_folders_named_monitor(database, tiny_model_file, tmp_path):
    """A build of an slmcnn before machines were keys (machine ""): the first named monitor of its
    folder goes on with it instead of starting a build; a second machine starts its own."""
    camera = tmp_path / "camera"
    photos(camera, ["00001.png", "00002.png"])
    monitor(camera, database, tiny_model_file, "--machine", "")
    photos(camera, ["00001.png", "00002.png", "00003.png"])
    monitor(camera, database, tiny_model_file, "--machine", "m290")
    assert by_build(database) == [(1, "m290", 3)]
    monitor(camera, database, tiny_model_file, "--machine", "m400")
    assert by_build(database) == [(1, "m290", 3), (2, "m400", 3)]


def test_a_running_monitor_is_seen_without_taking_its_lock(database, tmp_path):
    """The app's 'live' asks whether a monitor holds the lock without taking it: a monitor starting
    while the app looks must not be turned away."""
    db, watch = Database(database), str(tmp_path / "camera")
    assert db.monitor_running(watch, "printer-a") is False  # no monitor ever followed it
    held = db.lock(watch, "printer-a")
    assert db.monitor_running(watch, "printer-a") is True
    assert db.monitor_running(watch, "printer-b") is False
    assert db.monitor_running(watch, "printer-a") is True  # looking twice took nothing
    held.release()
    assert db.monitor_running(watch, "printer-a") is False
    db.lock(watch, "printer-a").release()  # free to be taken after all that looking
