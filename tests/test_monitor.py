import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import run_cli
from slmcnn.checkpoint import default_model_path
from slmcnn.monitor import AlertRules, evaluate_rules, layer_number

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_layer_numbers_from_names(tmp_path):
    assert layer_number(tmp_path / "00017.png", None) == 17
    assert layer_number(tmp_path / "job3_layer_0042.tif", None) == 42
    assert layer_number(tmp_path / "L12_cam3.png", re.compile(r"L(\d+)")) == 12
    assert layer_number(tmp_path / "photo.png", None) is None


def test_alert_rules():
    rules = AlertRules(error_fraction=0.05, persistent_layers=3, near_part=True, jump=0.2)
    clean = np.zeros((3, 3), int)
    err = clean.copy()
    err[0, 0] = 2
    assert evaluate_rules(rules, 1, "a", clean, 0.0, []) == []
    fired = {a.rule for a in evaluate_rules(rules, 3, "a", err, 0.11, [(err, 0.11), (err, 0.11)])}
    assert fired == {"error-fraction", "persistent-error"}
    near = err.copy()
    near[0, 1] = 1
    jump = {a.rule for a in evaluate_rules(rules, 4, "a", near, 0.3, [(clean, 0.0)])}
    assert jump == {"error-fraction", "error-near-part", "error-jump"}


def _db_rows(db, sql):
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def _layers_stored(db) -> int:
    """Finished layers so far (0 while the monitor is still creating its database)."""
    try:
        return _db_rows(db, "select count(*) from layers")[0][0] if db.exists() else 0
    except sqlite3.OperationalError:
        return 0


def test_restart_processes_each_layer_once_and_records_failures(tiny_build, tiny_model_file, tmp_path):
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
        tiny_model_file,
        "--exit-when-idle",
        "1",
        "--settle",
        "0.1",
        "--retries",
        "2",
        "--out",
        tmp_path / "out",
        "--alert-error-fraction",
        "0",
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
    assert [a["layer"] for a in alerts if a["rule"] == "error-fraction"] == [1, 2, 3, 4]


@pytest.mark.slow
def test_live_build_with_kill_and_restart(tmp_path):
    """synth --live writes a build with defects while the monitor runs; the monitor is killed half way."""
    assert default_model_path().is_file(), "the shipped model is missing"
    build, db, out = tmp_path / "live", tmp_path / "build.sqlite", tmp_path / "mon"
    layers = 12
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    synth = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "slmcnn",
            "synth",
            build,
            "--layers",
            str(layers),
            "--seed",
            "11",
            "--size",
            "768",
            "--live",
            "--interval",
            "0.8",
            "--no-patches",
            "--defects",
            "short_feed=0.25,chatter=0.15,streak=0,swelling=0,debris=0",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    monitor_cmd = [
        sys.executable,
        "-m",
        "slmcnn",
        "monitor",
        build / "layers",
        "--db",
        db,
        "--out",
        out,
        "--settle",
        "0.2",
        "--alert-jump",
        "-1",
        "--no-alert-near-part",
    ]
    while not (build / "layers").is_dir():
        time.sleep(0.1)
    monitor = subprocess.Popen(monitor_cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and _layers_stored(db) < layers // 2:
            time.sleep(0.2)
    finally:
        monitor.send_signal(signal.SIGKILL)
        monitor.wait()
    time.sleep(2.0)  # layers keep arriving while the monitor is down
    restarted = subprocess.run(
        [*monitor_cmd, "--exit-when-idle", "4"], env=env, capture_output=True, text=True, timeout=300
    )
    assert synth.wait(timeout=120) == 0
    assert restarted.returncode == 0, restarted.stderr
    rows = _db_rows(db, "select number, count(*) from layers group by file order by number")
    assert [r[0] for r in rows] == list(range(1, layers + 1)) and all(r[1] == 1 for r in rows)
    info = json.loads((build / "build.json").read_text())
    starts = {
        layer["layer"]
        for layer in info["layers"]
        for d in layer["defects"]
        if d["started"] == layer["layer"] and d["pixels"] > 20000
    }
    assert starts, "the build was meant to have large defects"
    alerted = {a for (a,) in _db_rows(db, "select distinct layer from alerts")}
    assert starts <= alerted, (sorted(starts), sorted(alerted))
    report = tmp_path / "report.html"
    assert run_cli("report", db, "--out", report).returncode == 0
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    shown = subprocess.run(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'chrome'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    body = re.search(r'<body data-images-shown="(\d+)" data-images-total="(\d+)"', shown.stdout)
    assert body and body.group(1) == body.group(2) and int(body.group(1)) >= 2 + 2 * layers
    assert 'id="curve"' in shown.stdout and 'id="heatmap"' in shown.stdout
    assert "CONSOLE" not in shown.stderr, shown.stderr


def test_alerts_stored_but_not_raised_are_raised_after_a_restart(tiny_build, tiny_model_file, tmp_path):
    watch, db, out = tmp_path / "camera", tmp_path / "b.sqlite", tmp_path / "out"
    watch.mkdir()
    for name in ("00001.png", "00002.png"):
        shutil.copy(tiny_build / "layers" / name, watch / name)
    args = ("monitor", watch, "--db", db, "--model", tiny_model_file, "--exit-when-idle", "1", "--settle", "0.1")
    args += ("--out", out, "--alert-error-fraction", "0")
    assert run_cli(*args).returncode == 0
    journal = out / "alerts.jsonl"
    lines = journal.read_text().splitlines()
    # what a kill between the database commit and the journal append leaves behind
    journal.write_text("".join(f"{line}\n" for line in lines if json.loads(line)["layer"] != 2))
    with sqlite3.connect(db) as conn:
        conn.execute("update alerts set raised = 0 where layer = 2")
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr
    assert "ALERT layer 2" in second.stdout and "ALERT layer 1" not in second.stdout
    assert sorted(journal.read_text().splitlines()) == sorted(lines)
    assert _db_rows(db, "select count(*) from alerts where raised = 0")[0][0] == 0


def test_database_from_the_first_version_gets_the_raised_column(tmp_path):
    from slmcnn.store import ResultStore

    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "create table alerts (id integer primary key, build_id integer not null, layer_id integer not null, "
            "layer integer, file varchar, rule varchar, message text, value float, created float)"
        )
        conn.execute("insert into alerts values (1, 1, 1, 7, 'a.png', 'error-fraction', 'm', 0.5, 0)")
    ResultStore(db)
    assert _db_rows(db, "select layer, raised from alerts") == [(7, 1)]
