import json
import os
import shutil
import sqlite3

import cv2
import numpy as np
import pytest

from tests.conftest import run_cli, sql_rows


def _db_rows(db, sql):
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_restart_processes_each_layer_once_and_records_failures(tiny_build, error_model_file, tmp_path):
    watch, db = tmp_path / "camera", tmp_path / "b.sqlite"
    watch.mkdir()
    for name in ("00001.png", "00002.png", "00003.png"):
        shutil.copy(tiny_build / "layers" / name, watch / name)
    args = (
        "monitor",
        watch,
        "--db",
        db,
        "--model",
        error_model_file,
        "--exit-when-idle",
        "1",
        "--settle",
        "0.1",
        "--retries",
        "2",
        "--out",
        tmp_path / "out",
    )
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    shutil.copy(tiny_build / "layers" / "00004.png", watch / "00004.png")
    (watch / "00005.png").write_bytes((tiny_build / "layers" / "00005.png").read_bytes()[:500])
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr
    rows = _db_rows(db, "select file, status from layers order by number")
    assert rows == [
        ("00001.png", "done"),
        ("00002.png", "done"),
        ("00003.png", "done"),
        ("00004.png", "done"),
        ("00005.png", "failed"),
    ]
    assert "FAILED" in second.stdout
    assert _db_rows(db, "select count(*) from tiles")[0][0] == 4 * 9
    alerts = [json.loads(line) for line in (tmp_path / "out" / "alerts.jsonl").read_text().splitlines()]
    assert [(a["layer"], a["grade"], a["build"]) for a in alerts] == [(n, "critical", "camera") for n in (1, 2, 3, 4)]
    assert alerts[0]["regions"][0]["box"] == [0, 0, 384, 384] and alerts[0]["overlay"].endswith(".png")
    assert _db_rows(db, "select grade from layers where status = 'done'") == [("critical",)] * 4
    report = tmp_path / "report.html"
    assert run_cli("report", db, "--out", report).returncode == 0
    page = report.read_text()
    strip = page[page.index('id="strip-1"') :].split("</div>")[0]
    assert strip.count('class="g-critical"') == 4 and 'href="#l-1-4"' in strip
    regions = page[page.index('id="regions-1"') :].split("</table>")[0]
    assert "<td>0-2</td><td>0-2</td><td>9</td><td>4: 1-4</td>" in regions


def test_alerts_stored_but_not_raised_are_raised_after_a_restart(tiny_build, error_model_file, tmp_path):
    watch, db, out = tmp_path / "camera", tmp_path / "b.sqlite", tmp_path / "out"
    watch.mkdir()
    for name in ("00001.png", "00002.png"):
        shutil.copy(tiny_build / "layers" / name, watch / name)
    args = ("monitor", watch, "--db", db, "--model", error_model_file, "--exit-when-idle", "1", "--settle", "0.1")
    args += ("--out", out)
    assert run_cli(*args).returncode == 0
    journal = out / "alerts.jsonl"
    lines = journal.read_text().splitlines()
    # what a kill between the database commit and the journal append leaves behind
    journal.write_text("".join(f"{line}\n" for line in lines if json.loads(line)["layer"] != 2))
    with sqlite3.connect(db) as conn:
        conn.execute("update alerts set raised = 0 where layer = 2")
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr
    said = second.stdout + second.stderr
    assert "ALERT CRITICAL layer 2" in said and "ALERT CRITICAL layer 1 " not in said
    assert sorted(journal.read_text().splitlines()) == sorted(lines)
    assert _db_rows(db, "select count(*) from alerts where raised = 0")[0][0] == 0


class Constant:
    """A backend that calls every tile the same class."""

    name = "constant"

    def __init__(self, probabilities=(0.7, 0.2, 0.1)):
        self.row = np.array(probabilities, np.float32)

    def probabilities(self, patches):
        return np.tile(self.row, (len(patches), 1))


def _follow(watch, db, build=None, backend=None, **options):
    from slmcnn.monitoring import Database, Monitor, MonitorConfig
    from slmcnn.pipeline import RunOptions

    config = MonitorConfig(watch, settle=0.0, build=build, out=options.pop("out", None))
    monitor = Monitor(config, Database(db), backend or Constant(), RunOptions(workers=1, **options))
    monitor.process_ready()
    return monitor


def _builds(db) -> dict[str, list[str]]:
    rows = _db_rows(
        db, "select b.name, l.file from builds b join layers l on l.build_id = b.id order by b.id, l.number"
    )
    found: dict[str, list[str]] = {}
    for name, file in rows:
        found.setdefault(name, []).append(file)
    return found


def test_new_builds_in_the_same_folder_are_recognised_and_never_skipped(tiny_build, tmp_path):
    watch, db = tmp_path / "cam", tmp_path / "b.sqlite"
    watch.mkdir()
    layers = sorted((tiny_build / "layers").glob("*.png"))
    for i in (1, 2, 3):
        shutil.copy(layers[i - 1], watch / f"{i:05d}.png")
    _follow(watch, db)
    os.utime(watch / "00001.png")  # touched, not rewritten: nothing new
    _follow(watch, db)
    assert _builds(db) == {"cam": ["00001.png", "00002.png", "00003.png"]}
    for i in (1, 2):  # the next build writes the same names again
        shutil.copy(layers[4 + i], watch / f"{i:05d}.png")
    _follow(watch, db)
    assert _builds(db)["cam #2"] == ["00001.png", "00002.png"]
    shutil.copy(layers[8], watch / "run3_00001.png")  # numbering starts again under other names
    _follow(watch, db)
    assert _builds(db)["cam #3"] == ["run3_00001.png"]
    shutil.copy(layers[9], watch / "run3_00002.png")
    _follow(watch, db, build="mine")
    assert _builds(db)["mine"] == ["run3_00002.png"] and len(_builds(db)) == 4
    _follow(watch, db)
    assert sum(map(len, _builds(db).values())) == 7  # each file once per build that wrote it
    report = tmp_path / "report.html"
    assert run_cli("report", db, "--out", report).returncode == 0
    page = report.read_text()
    assert all(f'id="build-{n}"' in page for n in (1, 2, 3, 4)) and "image missing" not in page


def test_report_shows_the_anomaly_of_builds_a_camera_profile_scored(tiny_build, tmp_path):
    """As a monitor with a camera profile stores them; a build without scores shows no heat map."""
    from slmcnn.monitoring.report import write_report

    watch, db = tmp_path / "cam", tmp_path / "b.sqlite"
    watch.mkdir()
    layers = sorted((tiny_build / "layers").glob("*.png"))
    for i in (1, 2):
        shutil.copy(layers[i - 1], watch / f"{i:05d}.png")
    rising = iter([np.linspace(0, 0.94, 9), np.linspace(0.5, 2.5, 9)])
    _follow(watch, db, build="<script>alert(1)</script>", anomaly=lambda result: next(rising))
    shutil.copy(layers[2], watch / "00003.png")
    _follow(watch, db, build="plain")
    page = write_report(db, tmp_path / "report.html").read_text()
    assert 'id="anomaly-1"' in page and 'id="anomaly-2"' not in page and page.count('class="anomaly-legend"') == 1
    assert "<td>1 of 2 scored</td>" in page and "highest over 2 layer(s)" in page
    assert 'alt="layer 2 anomaly heat map"' in page and '<span class="err">anomaly 2.50</span>' in page
    assert "anomaly 0.94</span>" in page and 'alt="layer 3 anomaly heat map"' not in page
    assert "Build &lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page


def test_builds_are_told_apart_by_machine_in_one_database(database, tiny_model_file, tmp_path):
    """Two printers' monitors write to one database; an older database gains the machine column."""
    from slmcnn.monitoring import Database

    for machine in ("m290-a", "m290-b"):
        watch = tmp_path / machine
        watch.mkdir()
        cv2.imwrite(str(watch / "00001.png"), np.full((128, 128, 3), 120, np.uint8))
        args = ("monitor", watch, "--db", database, "--model", tiny_model_file, "--backend", "torch", "--settle", "0")
        done = run_cli(*args, "--machine", machine, "--exit-when-idle", "0.3")
        assert done.returncode == 0, done.stderr
    stored = Database(database)
    assert [b.machine for b in stored.builds()] == ["m290-a", "m290-b"]
    assert stored.machines() == ["m290-a", "m290-b"]
    report = run_cli("report", database, "--out", tmp_path / "report.html")
    assert report.returncode == 0 and "Machines: m290-a, m290-b" in (tmp_path / "report.html").read_text()
    # a database of the slmcnn before machines (and before migrations): no machine column, no version
    sql_rows(database, "ALTER TABLE builds DROP COLUMN machine")
    sql_rows(database, "DROP TABLE alembic_version")
    assert [b.machine for b in Database(database).builds()] == ["", ""]


def test_the_app_lists_the_builds_of_a_shared_database_by_machine(database, tiny_model_file, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from slmcnn.app.server import create_app
    from slmcnn.app.workspace import AppConfig
    from slmcnn.monitoring import Database

    db = Database(database)
    db.new_build(str(tmp_path / "a"), "job 7", machine="m290-a")
    db.new_build(str(tmp_path / "b"), "job 7", machine="m290-b")
    config = AppConfig([database], [], tiny_model_file, labels=tmp_path / "labels.sqlite", token="t" * 32)
    client = TestClient(create_app(config), base_url="http://127.0.0.1")
    assert [s["name"] for s in client.get("/api/sets").json()] == ["job 7 (m290-a)", "job 7 (m290-b)"]


def test_the_store_gives_a_stored_layer_back_as_its_result(tmp_path, tiny_build):
    """monitoring.db on its own: a layer stored, read back as the LayerResult it was."""
    from slmcnn.grading import grade_layer
    from slmcnn.monitoring.alerts import Alert
    from slmcnn.monitoring.db import Database
    from slmcnn.monitoring.db.records import FileStamp
    from slmcnn.pipeline import run_layers

    photo = tiny_build / "layers" / "00003.png"
    result = next(iter(run_layers([photo], Constant((0.2, 0.1, 0.7))))).result
    result.anomaly = np.linspace(0, 2, result.grid.count).astype(np.float32)
    db = Database(tmp_path / "store.sqlite")
    build = db.open_build(str(tiny_build), machine="m1")
    grade = grade_layer(result.tile_classes, result.probabilities[:, 2], result.anomaly, result.grid)
    alert = Alert.of_layer(3, photo.name, grade, "b", "m1")
    build.add_layer(3, result, grade, alert, None, FileStamp.of(photo))
    stored = db.layers(build.id)[0]
    back = db.layer_result(stored)
    assert back.path == photo and back.grid.shape == result.grid.shape and back.image.shape == result.image.shape
    np.testing.assert_allclose(back.probabilities, result.probabilities, atol=1e-6)
    np.testing.assert_allclose(back.anomaly, result.anomaly, atol=1e-6)
    assert (back.tile_classes == result.tile_classes).all() and (back.class_map == result.class_map).all()
    assert abs(back.image.astype(int) - result.image.astype(int)).mean() < 12  # the kept thumbnail, scaled up
    assert stored.digest == FileStamp.of(photo).digest and db.machines() == ["m1"]
    (back_alert,) = db.alerts(build.id)
    assert back_alert.regions == alert.regions and back_alert.grade == grade.grade == "minor"
    assert (back_alert.build, back_alert.machine) == (tiny_build.name, "m1") and db.grades(build.id) == {3: "minor"}
    assert db.stored_files(str(tiny_build), "m1")["00003.png"][0].status == "done"
