"""Issue #39, hardening round 3: alerts that are never sent, migrations that stick, profiles that
break, a database that goes away. One test per kind of defect (with its siblings), on SQLite and,
where the database matters, on PostgreSQL too (the `database` fixture)."""

import json
import logging
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from slmcnn.errors import DatabaseError
from tests.conftest import first_version_tables, sql_rows
from tests.integration.test_hardening import layer_png, monitor_for


def journal_ids(out: Path) -> list[int]:
    journal = out / "alerts.jsonl"
    return [json.loads(line)["id"] for line in journal.read_text().splitlines()] if journal.exists() else []


@pytest.fixture
def quick_retries(monkeypatch):
    """A hook that fails is tried once per raise, not four times over 3.5 s."""
    from slmcnn.monitoring import watch

    monkeypatch.setattr(watch, "deliver", partial(watch.deliver, backoff=()))


# ---------------------------------------------------------------- alerts: raised exactly once, or reported failed


def test_a_new_alert_in_a_migrated_first_version_database_is_raised(database, error_model_file, tmp_path):
    """slmcnn 0.1 stored its alerts raised; the `raised` column its migration adds must not make
    every later alert raised too (the column's default)."""
    first_version_tables(database)
    watch, out = tmp_path / "camera", tmp_path / "live"
    watch.mkdir()
    sql_rows(database, f"INSERT INTO builds (watch_dir, model, started) VALUES ('{watch}', 'm', 0)")
    sql_rows(database, "INSERT INTO layers (build_id, number, file, status) VALUES (1, 1, 'old.png', 'done')")
    sql_rows(database, "INSERT INTO alerts (build_id, layer_id, layer, rule) VALUES (1, 1, 1, 'error-fraction')")
    layer_png(watch / "00002.png")
    monitor = monitor_for(watch, database, error_model_file, out, settle=0.0)
    assert monitor.process_ready() == 1
    monitor.lock.release()
    assert journal_ids(out) == [2]  # the new one only: 0.1's alert was raised by 0.1
    assert sql_rows(database, "SELECT id, raised FROM alerts ORDER BY id") == [(1, 1), (2, 1)]


def test_an_alert_whose_hook_failed_or_hung_is_raised_in_the_next_build_and_after_a_restart(
    database, error_model_file, tmp_path, quick_retries
):
    """A hook that exits non-zero or runs past its timeout has not delivered the alert: it stays
    unraised, and is raised by the folder's next monitor, whatever build that one follows."""
    watch, out, ran = tmp_path / "camera", tmp_path / "live", tmp_path / "ran"
    watch.mkdir()
    layer_png(watch / "00001.png")
    failing = monitor_for(watch, database, error_model_file, out, settle=0.0, on_alert="exit 1")
    assert failing.process_ready() == 1
    failing.lock.release()
    hung = f"sleep 30; touch {ran}"
    monitor = monitor_for(watch, database, error_model_file, out, settle=0.0, on_alert=hung, on_alert_timeout=0.3)
    monitor.raise_pending()  # a restart: the hook hangs, is stopped and does not count
    monitor.lock.release()
    assert sql_rows(database, "SELECT raised FROM alerts") == [(0,)] and journal_ids(out) == [1, 1]
    delivered = tmp_path / "delivered"
    hook = f"echo $SLMCNN_ALERT_ID >> {delivered}"
    following = monitor_for(watch, database, error_model_file, out, settle=0.0, on_alert=hook, build="next")
    layer_png(watch / "00002.png", seed=1)
    following.run(exit_when_idle=0.2)
    assert following.build.row.name == "next" and sorted(delivered.read_text().split()) == ["1", "2"]
    assert sql_rows(database, "SELECT raised FROM alerts ORDER BY id") == [(1,), (1,)]
    time.sleep(0.5)
    assert not ran.exists()  # the hung hook was killed with everything it started


# ---------------------------------------------------------------- a database that goes away


class Outage:
    """The monitor's database away for `seconds`: an SQLite file held by another program (longer
    than its 5 s busy timeout), or a PostgreSQL database that drops every connection and takes no
    new one, as a server restarting does."""

    def __init__(self, database: str, seconds: float):
        self.database, self.seconds = database, seconds

    def start(self) -> None:
        import sqlite3

        from tests.conftest import POSTGRES

        if "://" not in self.database:
            holder = sqlite3.connect(self.database, check_same_thread=False, isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")
            threading.Timer(self.seconds, lambda: (holder.execute("COMMIT"), holder.close())).start()
            return
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        name = make_url(self.database).database
        server = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")

        def allow(flag: str) -> None:
            with server.connect() as conn:
                conn.execute(text(f"ALTER DATABASE {name} ALLOW_CONNECTIONS {flag}"))
                if flag == "false":
                    conn.execute(
                        text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
                    )

        allow("false")
        threading.Timer(self.seconds, allow, ("true",)).start()


def test_the_monitor_waits_out_a_database_that_goes_away_and_loses_nothing(
    database, error_model_file, tmp_path, monkeypatch, caplog
):
    """The database goes away while a layer is being classified (a reader holding SQLite, a server
    restarting): one line, tries with backoff, one line when it is back; every layer and alert
    stored once, every alert raised once; a monitor idle through the outage goes on too."""
    from slmcnn.monitoring import watch

    monkeypatch.setattr(watch, "OUTAGE_WAITS", (0.2, 0.5))
    folder, out = tmp_path / "camera", tmp_path / "live"
    folder.mkdir()
    for i in range(3):
        layer_png(folder / f"{i + 1:05d}.png", i)
    monitor = monitor_for(folder, database, error_model_file, out, settle=0.0)
    assert monitor.process_ready() == 3
    outage = Outage(database, 6.0 if "://" not in database else 2.0)
    outage.start()  # idle through it: the next layer is the first thing after it
    time.sleep(outage.seconds + 0.5)
    monitor.lock.renew()  # as the monitor does once the database is back: the folder stays its own
    with pytest.raises(DatabaseError, match="another monitor"):
        monitor_for(folder, database, error_model_file, out, settle=0.0)
    layer_png(folder / "00004.png", 3)
    layer_png(folder / "00005.png", 4)
    run = monitor.pipeline.run

    def classified_while_away(paths):
        if Path(paths[0]).name == "00005.png":
            outage.start()
        return run(paths)

    monkeypatch.setattr(monitor.pipeline, "run", classified_while_away)
    caplog.set_level(logging.INFO)
    monitor.run(exit_when_idle=0.2)
    rows = sql_rows(database, "SELECT file, status FROM layers ORDER BY number")
    assert rows == [(f"{i + 1:05d}.png", "done") for i in range(5)]
    assert sql_rows(database, "SELECT layer, raised FROM alerts ORDER BY layer") == [(i + 1, 1) for i in range(5)]
    assert sorted(journal_ids(out)) == [1, 2, 3, 4, 5]
    away = [r.message for r in caplog.records if "unavailable" in r.message]
    back = [r.message for r in caplog.records if " back after " in r.message]
    assert len(away) == 1 and len(back) == 1, away + back
    assert "password" not in away[0] and "\n" not in away[0]


# ---------------------------------------------------------------- camera profiles that break


@pytest.fixture(scope="module")
def small_profile():
    import numpy as np
    import torch

    from slmcnn.model import create_model
    from slmcnn.profile import build_profile

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    frames = [rng.integers(100, 140, (256, 256, 3), dtype=np.uint8) for _ in range(6)]
    return build_profile(frames, None, create_model("slmcnn-tiny").eval())


def test_a_profile_update_is_one_step_and_a_bad_camera_file_names_its_field(tmp_path, small_profile, monkeypatch):
    import dataclasses
    import errno

    import numpy as np

    from slmcnn import files
    from slmcnn.errors import OutputError, ProfileError
    from slmcnn.profile import arrays_path, load_camera, save_camera

    path = save_camera(tmp_path / "camera.json", None, small_profile)
    first = arrays_path(path)
    updated = dataclasses.replace(small_profile, thresholds=small_profile.thresholds * 1.5)

    def full(target, text, force=True):
        raise OutputError(f"cannot write {target}: the disk is full") from OSError(errno.ENOSPC, "full")

    with monkeypatch.context() as patch:  # the disk fills between the arrays and camera.json
        patch.setattr(files, "write_text", full)
        with pytest.raises(OutputError):
            save_camera(path, None, updated, force=True)
    assert arrays_path(path) == first and np.array_equal(load_camera(path)[1].thresholds, small_profile.thresholds)
    save_camera(path, None, updated, force=True)
    assert not first.exists() and np.array_equal(load_camera(path)[1].thresholds, updated.thresholds)
    save_camera(path, None, small_profile, force=True)  # and back: two names in turn, never one half-replaced
    assert arrays_path(path) == first and sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, path.name])

    good = json.loads(path.read_text())
    corners = {"corners": [[0, 0], [9000, 0], [9000, 9000], [0, 9000]], "size": 256}
    cases = [
        ("threshold", 0), ("threshold", "high"), ("error_threshold", float("nan")), ("error_threshold", -1),
        ("confirm", "x"), ("arrays", None), ("arrays", "../camera.profile.safetensors"),
        ("arrays", str(first)), ("frame_shape", "256x256"), ("grid_shape", [2]), ("patch", 0), ("model", "tiny"),
    ]  # fmt: skip
    for field, value in cases:
        doc = json.loads(json.dumps(good))
        doc["profile"][field] = value
        path.write_text(json.dumps(doc))
        with pytest.raises(ProfileError, match=f'its profile\'s "{field}" must be') as error:
            load_camera(path)
        assert len(str(error.value).splitlines()) == 1
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "full_frame"} | corners))
    with pytest.raises(ProfileError, match="corners .* lie far outside 256x256 px frames"):
        load_camera(path)
    for name, value in (("thresholds", 0.0), ("mean", float("nan")), ("scale", 0.0)):
        broken = getattr(small_profile, name).copy()
        broken[0] = value
        save_camera(path, None, dataclasses.replace(small_profile, **{name: broken}), force=True)
        with pytest.raises(ProfileError, match=f'its array "{name}"'):
            load_camera(path)


# ---------------------------------------------------------------- the app: labels lost, bodies without end


@pytest.fixture(scope="module")
def app_client(tiny_build, tiny_model_file, error_model_file, tmp_path_factory):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from slmcnn.app.server import create_app
    from slmcnn.app.workspace import AppConfig
    from tests.integration.test_app import monitored_build

    root = tmp_path_factory.mktemp("app")
    db = monitored_build(tiny_build, error_model_file, root, 3)
    (root / "data").mkdir()
    config = AppConfig([db], [root / "data"], tiny_model_file, labels=root / "labels.sqlite", token="t", user="me")
    return TestClient(create_app(config), base_url="http://127.0.0.1:8765", headers={"X-Slmcnn-Token": "t"})


def test_app_undo_keeps_later_labels_exports_never_share_a_folder_and_bodies_are_bounded(app_client, monkeypatch):
    from slmcnn.app.limits import MAX_BODY

    client = app_client
    alert = client.get("/api/sets/b0-1").json()["alerts"][0]
    review, layer = f"/api/sets/b0-1/alerts/{alert['id']}", f"/api/sets/b0-1/layers/{alert['index']}"
    assert client.post(review, json={"verdict": "false_alarm"}).json()["labelled"] == 9
    client.post(f"{layer}/labels", json={"row": 1, "col": 1, "cls": 1})  # a hand label after the review
    assert client.request("DELETE", review, json={}).json()["restored"] == 8
    labels = client.get(layer).json()["labels"]
    assert labels[1][1] == 1 and sum(cell is not None for row in labels for cell in row) == 1

    for i in range(3):  # enough labelled layers to export
        cells = [{"row": r, "col": c, "cls": (r + c + i) % 3} for r in range(3) for c in range(3)]
        client.post(f"/api/sets/b0-1/layers/{i}/labels", json={"labels": cells})
    monkeypatch.setattr(time, "strftime", lambda pattern, *when: "20260101-000000")  # the same second
    folders = [Path(client.post("/api/export", json={}).json()["folder"]) for _ in range(2)]
    assert folders[0] != folders[1]
    for folder in folders:
        names = [p.name for p in folder.glob("*/*.png")]
        assert len(names) == len(set(names)) == 27  # no tile under two classes

    huge = b'{"labels": [' + b'{"row": 0, "col": 0, "cls": 1},' * (MAX_BODY // 30) + b"{}]}"
    refused = client.post(f"{layer}/labels", content=huge, headers={"Content-Type": "application/json"})
    assert refused.status_code == 413 and "larger than the app takes" in refused.text
    streamed = client.post(f"{layer}/labels", content=iter([huge[:MAX_BODY], huge[MAX_BODY:]]))  # chunked
    assert streamed.status_code == 413
    assert client.post(f"{layer}/labels", json={"row": 0, "col": 0, "cls": 2}).status_code == 200
    nul = client.post("/api/sets", json={"folder": "photos\x00/../x"})
    assert nul.status_code == 404 and "no such folder" in nul.json()["error"]
    data = Path(client.app.state.workspace.roots[0])
    (data / "loop").symlink_to(data / "loop")
    looped = client.post("/api/sets", json={"folder": "loop"})
    assert looped.status_code == 404 and "a loop of symbolic links" in looped.json()["error"]


def test_one_bad_photo_leaves_the_others_proposed(app_client, tmp_path):
    client = app_client
    photos = Path(client.app.state.workspace.roots[0]) / "photos"
    photos.mkdir()
    for i in range(3):
        layer_png(photos / f"{i + 1:05d}.png", i)
    (photos / "00002.png").write_bytes(b"\x89PNG\r\n\x1a\n not a photo")
    opened = client.post("/api/sets", json={"folder": "photos"}).json()
    proposed = client.get(f"/api/sets/{opened['id']}/proposals", params={"count": 5})
    assert proposed.status_code == 200 and proposed.json(), proposed.text


# ---------------------------------------------------------------- inputs that are one clear line


def test_more_inputs_that_are_one_clear_line(tmp_path, tiny_model_file):
    import numpy as np

    import slmcnn
    from slmcnn.errors import SlmcnnError
    from tests.conftest import run_cli
    from tests.integration.test_hardening import one_line

    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    out = tmp_path / "out"
    loop = tmp_path / "a.png"
    one_line(run_cli("predict-layer", loop, "--out", out, "--model", tiny_model_file), 2, "a loop")
    frame = layer_png(tmp_path / "frame.png")
    for args in (
        ("report", loop),
        ("report", tmp_path / "b.sqlite", "--out", loop),
        ("calibrate", frame, "--out", loop),
    ):
        one_line(run_cli(*args), 2, "a.png: a loop of symbolic links")
    watch = tmp_path / "camera"
    watch.mkdir()
    layer_png(watch / "00001.png")
    monitor = ("monitor", watch, "--model", tiny_model_file, "--exit-when-idle", "0.1")
    one_line(run_cli(*monitor, "--db", loop), 2, "a.png: a loop of symbolic links")
    one_line(run_cli(*monitor, "--db", tmp_path / "b.sqlite", "--out", loop), 2, "a.png: a loop of symbolic links")
    for call, words in (
        (lambda: slmcnn.calibrate(np.zeros((0, 0, 3), np.uint8)), "empty image"),
        (lambda: slmcnn.predict_layers(np.zeros((0, 5, 3), np.uint8), tiny_model_file, backend="torch"), "empty"),
        (lambda: slmcnn.predict_archive(123, out), "layers"),
    ):
        with pytest.raises(SlmcnnError, match=words):
            call()
    base = ("monitor", watch, "--db", tmp_path / "b.sqlite", "--model", tiny_model_file, "--exit-when-idle", "0.1")
    for flag, value in (("--alert-share", "2"), ("--alert-region", "0"), ("--alert-sure", "nan")):
        one_line(run_cli(*base, flag, value), 2, flag)
    one_line(run_cli(*base, "--alert-persist", "9/3"), 2, "--alert-persist")


def test_the_monitor_and_the_app_leave_another_program_s_sqlite_file_alone(tmp_path, tiny_model_file):
    import sqlite3

    from slmcnn.app.store import LabelStore
    from slmcnn.errors import SettingsError
    from tests.conftest import run_cli
    from tests.integration.test_hardening import one_line

    theirs = tmp_path / "inventory.sqlite"
    with sqlite3.connect(theirs) as conn:
        conn.execute("CREATE TABLE parts (id INTEGER PRIMARY KEY, name TEXT)")
    before = theirs.read_bytes()
    watch = tmp_path / "camera"
    watch.mkdir()
    layer_png(watch / "00001.png")
    args = ("monitor", watch, "--db", theirs, "--model", tiny_model_file, "--exit-when-idle", "0.1")
    one_line(run_cli(*args), 2, "another program's database", "parts")
    with pytest.raises(SettingsError, match="another program's database"):
        LabelStore(theirs)
    assert theirs.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["camera", theirs.name]


# ---------------------------------------------------------------- builds


def test_a_layer_photo_taken_again_stays_in_its_build(database, error_model_file, tmp_path):
    """A later layer's photo written again (a retake) is classified again in its build, its alerts
    kept; the build's first layer written again is a new build."""
    folder = tmp_path / "camera"
    folder.mkdir()
    for i in range(3):
        layer_png(folder / f"{i + 1:05d}.png", i)
    monitor = monitor_for(folder, database, error_model_file, tmp_path / "live", settle=0.0)
    assert monitor.process_ready() == 3
    layer_png(folder / "00002.png", 7)  # the retake
    layer_png(folder / "00004.png", 4)
    assert monitor.process_ready() == 2
    query = "SELECT b.name, l.file, l.number FROM layers l JOIN builds b ON b.id = l.build_id ORDER BY l.number"
    assert [row[0] for row in sql_rows(database, query)] == ["camera"] * 4
    digest = sql_rows(database, "SELECT digest FROM layers WHERE file = '00002.png'")
    assert digest == [(monitor.stored["00002.png"][-1].stamp.digest,)]
    assert sql_rows(database, "SELECT layer FROM alerts ORDER BY id") == [(1,), (2,), (3,), (2,), (4,)]
    assert sql_rows(database, "SELECT count(*) FROM tiles t JOIN layers l ON l.id = t.layer_id WHERE l.number = 2") == [
        (4,)
    ]
    layer_png(folder / "00001.png", 9)  # the next build's first layer over the old one
    assert monitor.process_ready() == 1
    monitor.lock.release()
    assert sql_rows(database, "SELECT name FROM builds ORDER BY id") == [("camera",), ("camera #2",)]
