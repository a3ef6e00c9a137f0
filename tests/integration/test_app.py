"""`slmcnn app`'s API: every route, refused paths and tokens, labels that survive a restart,
review, export that `slmcnn train` splits by layer, and a one-epoch fine-tune of a tiny model."""

import csv
import io
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from slmcnn.app.server import create_app  # noqa: E402
from slmcnn.app.store import LabelStore  # noqa: E402
from slmcnn.app.workspace import AppConfig  # noqa: E402
from slmcnn.profile import save_camera  # noqa: E402
from tests.conftest import run_cli  # noqa: E402

TOKEN = "test-token"
AUTH = {"X-Slmcnn-Token": TOKEN}


def monitored_build(build: Path, model: Path, root: Path, layers: int) -> Path:
    """A monitor's database of the first `layers` layers of a synthetic build (alerts on every layer)."""
    watch, db = root / "camera", root / "build.sqlite"
    watch.mkdir(parents=True)
    for path in sorted((build / "layers").glob("*.png"))[:layers]:
        shutil.copy(path, watch / path.name)
    args = ["monitor", watch, "--db", db, "--model", model, "--exit-when-idle", "0.5", "--settle", "0.05"]
    done = run_cli(*args, "--backend", "torch")
    assert done.returncode == 0, done.stderr
    return db


@pytest.fixture(scope="module", name="env")
def env_fixture(tiny_build, tiny_model_file, error_model_file, tmp_path_factory):
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


def test_pages_carry_the_token_and_assets_come_from_the_package(env):
    client = env["client"]
    for url in ("/", "/sets/b0-1", "/sets/b0-1/layers/0"):
        page = client.get(url)
        assert page.status_code == 200 and f'content="{TOKEN}"' in page.text
        assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    for asset in ("app.css", "common.js", "index.js", "set.js", "layer.js"):
        assert client.get(f"/static/{asset}").status_code == 200
    assert client.get("/sets/nope").status_code == 404


def test_sets_summary_and_layer(env):
    client = env["client"]
    sets = {s["id"]: s for s in client.get("/api/sets").json()}
    assert sets["b0-1"]["kind"] == "build" and sets["b0-1"]["layers"] == 4
    summary = client.get("/api/sets/b0-1").json()
    assert [entry["number"] for entry in summary["layer_list"]] == [1, 2, 3, 4]
    assert summary["alerts"] and summary["alerts"][0]["verdict"] is None
    assert len(summary["recurrence"]) == 3  # 384 px: 3x3 tiles
    layer = client.get("/api/sets/b0-1/layers/1").json()
    assert (layer["rows"], layer["cols"], layer["width"]) == (3, 3, 384)
    assert len(layer["probabilities"][0][0]) == 3 and layer["labels"] == [[None] * 3] * 3
    image = client.get("/api/sets/b0-1/layers/1/image")
    assert image.headers["content-type"] == "image/jpeg" and image.content[:2] == b"\xff\xd8"
    for url in ("/api/sets/b0-1/layers/9", "/api/sets/b9-9", "/api/sets/b0-1/layers/-1/image"):
        assert client.get(url).status_code == 404
    assert client.get("/api/model").json()["arch"] == "slmcnn-tiny"


def test_integrated_gradients_of_one_tile(env):
    client = env["client"]
    heat = client.get("/api/sets/b0-1/layers/0/explain", params={"row": 1, "col": 2})
    assert heat.status_code == 200 and heat.content[:4] == b"\x89PNG" and heat.headers["x-target"]
    assert client.get("/api/sets/b0-1/layers/0/explain", params={"row": 5, "col": 0}).status_code == 404


def test_state_changes_need_the_page_token(env):
    client, label = env["client"], {"row": 0, "col": 0, "cls": 1}
    assert client.post("/api/sets/b0-1/layers/0/labels", json=label).status_code == 403
    assert client.post("/api/sets/b0-1/layers/0/labels", json=label, headers={"X-Slmcnn-Token": "x"}).status_code == 403
    for url in ("/api/export", "/api/finetune", "/api/finetune/current", "/api/sets", "/api/sets/b0-1/alerts/1"):
        assert client.post(url, json={}).status_code == 403, url
    assert client.get("/api/sets/b0-1/layers/0").json()["labels"][0][0] is None


def test_labels_are_stored_at_once_with_who_and_when(env):
    client, url = env["client"], "/api/sets/b0-1/layers/2/labels"
    assert client.post(url, json={"row": 0, "col": 1, "cls": 2, "who": "ana"}, headers=AUTH).json() == {"stored": 1}
    batch = {"labels": [{"row": 1, "col": 1, "cls": 0}, {"row": 2, "col": 2, "cls": 1}]}
    assert client.post(url, json=batch, headers=AUTH).json() == {"stored": 2}
    assert client.post(url, json={"row": 2, "col": 2, "cls": None}, headers=AUTH).status_code == 200  # 0 clears
    assert client.post(url, json={"row": 3, "col": 0, "cls": 1}, headers=AUTH).status_code == 404
    assert client.post(url, json={"row": 0, "col": 0, "cls": 7}, headers=AUTH).status_code == 400
    layer = client.get("/api/sets/b0-1/layers/2").json()
    assert layer["labels"][0][1] == 2 and layer["checked"][0][1] and layer["labels"][2][2] is None
    again = LabelStore(env["config"].labels_path)  # another connection, as after a restart
    stored = again.layer_labels(client.app.state.workspace.get_set("b0-1").key, "00003.png")
    cls, checked, who, at = stored[(0, 1)]
    assert (cls, checked, who) == (2, True, "ana") and time.time() - at < 60
    assert stored[(1, 1)][2] == "tester" and again.log_count() >= 4
    again.close()


def test_open_folders_only_inside_the_data_folders(env):
    client, root = env["client"], env["root"]
    opened = client.post("/api/sets", json={"folder": "photos"}, headers=AUTH)
    assert opened.status_code == 200 and opened.json()["layers"] == 3
    layer = client.get(f"/api/sets/{opened.json()['id']}/layers/0").json()
    assert layer["file"] == "00005.png" and len(layer["classes"]) == 3
    for folder in ("..", "../secret", str(root / "secret"), "/etc", "photos/../../secret", "escape"):
        refused = client.post("/api/sets", json={"folder": folder}, headers=AUTH)
        assert refused.status_code == 403, folder
    assert client.post("/api/sets", json={"folder": "missing"}, headers=AUTH).status_code == 404
    for url in (
        "/static/../app/server.py",
        "/static/%2e%2e/server.py",
        "/static/..%2fserver.py",
        "/static//etc/passwd",
    ):
        response = client.get(url)
        assert response.status_code == 404 and b"import" not in response.content, url


def test_only_loopback_host_names_are_answered(env):
    client = env["client"]
    for host in ("localhost:8765", "[::1]:8765", "127.0.0.1"):
        assert client.get("/api/sets", headers={"host": host}).status_code == 200, host
    rebinding = ("127.0.0.1.evil.example:8765", "127.evil.example", "localhost.evil.example", "127.0.0.1evil:1")
    for host in ("evil.example:8765", "evil.example", "192.168.1.5:8765", *rebinding):  # DNS rebinding
        assert client.get("/", headers={"host": host}).status_code == 403, host


def test_anomaly_scores_stored_by_the_monitor_are_shown(env):
    import sqlite3

    client = env["client"]
    assert client.get("/api/sets/b0-1/layers/3").json()["anomaly"] is None
    with sqlite3.connect(env["db"]) as conn:  # as a monitor with a camera profile stores them
        layer_id = conn.execute("select id from layers where number = 4").fetchone()[0]
        conn.execute("update tiles set anomaly = 0.25 + row where layer_id = ?", (layer_id,))
    anomaly = client.get("/api/sets/b0-1/layers/3").json()["anomaly"]
    assert anomaly == [[0.25] * 3, [1.25] * 3, [2.25] * 3]


def test_a_server_beyond_this_machine_needs_its_token(env):
    config = AppConfig([env["db"]], [], env["model"], labels=env["root"] / "remote.sqlite", host="0.0.0.0", token="t0k")
    remote = TestClient(create_app(config))
    assert remote.get("/").status_code == 401 and remote.get("/api/sets").status_code == 401
    assert remote.get("/static/app.css").status_code == 401
    assert remote.get("/", params={"token": "t0k"}).status_code == 200  # sets the cookie
    assert remote.get("/api/sets").status_code == 200
    assert remote.post("/api/export", json={}).status_code == 403  # the cookie alone changes nothing
    refused = run_cli("app", "--db", env["db"], "--host", "0.0.0.0")
    assert refused.returncode != 0 and "--token" in refused.stderr


def test_review_alerts_with_the_class_asked_for_and_undo(env):
    client = env["client"]
    summary = client.get("/api/sets/b0-1").json()
    alerts = summary["alerts"]
    assert [a["layer"] for a in alerts] == [1, 2, 3, 4] and {a["grade"] for a in alerts} == {"critical"}
    assert alerts[0]["regions"][0]["tiles"] == 9 and [g["grade"] for g in summary["layer_list"]] == ["critical"] * 4
    assert summary["regions"][0]["layers"] == [1, 2, 3, 4] and summary["regions"][0]["spans"] == "1-4"
    first, second = alerts[0], alerts[-1]
    url = "/api/sets/b0-1/alerts/{}"
    layer_url = f"/api/sets/b0-1/layers/{second['index']}"
    client.post(f"{layer_url}/labels", json={"row": 0, "col": 0, "cls": 1}, headers=AUTH)  # a label made before
    assert client.post(url.format(first["id"]), json={"verdict": "confirmed"}, headers=AUTH).json()["labelled"] == 0
    rejected = client.post(url.format(second["id"]), json={"verdict": "false_alarm"}, headers=AUTH).json()
    layer = client.get(layer_url).json()
    assert rejected["labelled"] == 9 and rejected["instead"] == "Powder"
    assert [layer["labels"][r][c] for r in range(3) for c in range(3)] == [0] * 9  # Powder unless told
    again = client.post(url.format(second["id"]), json={"verdict": "false_alarm", "instead": 1}, headers=AUTH).json()
    assert again["instead"] == "Object"
    assert {client.get(layer_url).json()["labels"][r][c] for r in range(3) for c in range(3)} == {1}
    verdicts = {a["id"]: a["verdict"] for a in client.get("/api/sets/b0-1").json()["alerts"]}
    assert verdicts[first["id"]] == "confirmed" and verdicts[second["id"]] == "false_alarm"
    assert client.request("DELETE", url.format(second["id"]), json={}, headers=AUTH).json()["restored"] == 9
    labels = client.get(layer_url).json()["labels"]
    assert labels[0][0] == 1 and [labels[r][c] for r in range(3) for c in range(3)][1:] == [None] * 8  # as before
    verdicts = {a["id"]: a["verdict"] for a in client.get("/api/sets/b0-1").json()["alerts"]}
    assert verdicts[second["id"]] is None
    assert client.request("DELETE", url.format(second["id"]), json={}, headers=AUTH).status_code == 404
    client.post(f"{layer_url}/labels", json={"row": 0, "col": 0, "cls": None}, headers=AUTH)
    assert client.post(url.format(first["id"]), json={"verdict": "maybe"}, headers=AUTH).status_code == 400
    bad = client.post(url.format(first["id"]), json={"verdict": "false_alarm", "instead": 2}, headers=AUTH)
    assert bad.status_code == 400 and "Powder" in bad.json()["error"]
    assert client.post(url.format(99999), json={"verdict": "confirmed"}, headers=AUTH).status_code == 404


def label_layers(client, set_id: str, layers: range) -> None:
    for i in layers:
        cells = [{"row": r, "col": c, "cls": (r + c + i) % 3} for r in range(3) for c in range(3)]
        assert (
            client.post(f"/api/sets/{set_id}/layers/{i}/labels", json={"labels": cells}, headers=AUTH).status_code
            == 200
        )


def test_export_writes_class_folders_and_a_split_file_train_splits_by_layer(env):
    from slmcnn.data import load_source, split

    client = env["client"]
    label_layers(client, "b0-1", range(4))
    done = client.post("/api/export", json={}, headers=AUTH).json()
    folder = Path(done["folder"])
    assert done["tiles"] == sum(done["counts"].values()) >= 36 and done["layers"] >= 4
    rows = list(csv.DictReader(open(folder / "split.csv")))
    assert list(rows[0]) == ["path", "label", "build", "layer", "row", "col", "split"]
    assert all((folder / r["path"]).is_file() and r["path"].startswith(r["label"] + "/") for r in rows)
    table = load_source(folder)
    parts = split(table)
    layers = {name: {g for g in part.groups} for name, part in parts.items()}
    assert not (layers["train"] & layers["val"]) and not (layers["train"] & layers["test"])


def test_train_on_plain_class_folders_warns_it_cannot_split_by_layer(env, tmp_path):
    done = sorted((env["root"] / "labels-app").glob("export-*"))[-1]
    plain = tmp_path / "plain"
    for name in ("Powder", "Object", "Error"):
        shutil.copytree(done / name, plain / name)
    out = run_cli("train", plain, "--out", tmp_path / "run", "--arch", "slmcnn-tiny", "--epochs", "1", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "cannot be split by layer" in out.stderr
    by_layer = run_cli("train", done, "--out", tmp_path / "run2", "--arch", "slmcnn-tiny", "--epochs", "1", "--quiet")
    assert by_layer.returncode == 0 and "cannot be split by layer" not in by_layer.stderr


def test_fine_tune_in_the_background_then_make_current(env):
    client = env["client"]
    assert client.post("/api/finetune/current", json={}, headers=AUTH).status_code == 400
    assert client.post("/api/finetune", json={"epochs": 0}, headers=AUTH).status_code == 400
    label_layers(client, "b0-1", range(4))
    started = client.post("/api/finetune", json={"epochs": 1, "lr": 0.001}, headers=AUTH)
    assert started.status_code == 200 and started.json()["state"] == "running"
    assert client.post("/api/finetune", json={"epochs": 1}, headers=AUTH).status_code == 400  # one at a time
    deadline = time.time() + 240
    while (state := client.get("/api/finetune").json())["state"] == "running" and time.time() < deadline:
        time.sleep(0.5)
    assert state["state"] == "done", state
    compared = state["comparison"]
    assert state["epoch"] == 1 and compared["tiles"] == sum(compared["counts"].values()) > 0
    for model in ("old", "new"):
        figures = compared["models"][model]
        assert 0 <= figures["accuracy"] <= 1 and set(figures["recall"]) == {"Powder", "Object", "Error"}
        assert figures["sound_tiles"] == compared["counts"]["Powder"] + compared["counts"]["Object"]
        assert 0 <= figures["false_alarms"] <= figures["sound_tiles"]
        assert all(v is None or 0 <= v <= 1 for v in figures["recall"].values())
    assert compared["layers"] < 3 and any("held-out layer" in w for w in compared["warnings"])
    run = Path(state["run"])
    assert (run / "model" / "model.safetensors").is_file() and (run / "data" / "split.csv").is_file()
    mixed = [r for r in csv.DictReader(open(run / "data" / "split.csv")) if r["build"] == "rehearsal"]
    assert len(mixed) == state["export"]["splits"]["rehearsal"] > 0 and {r["split"] for r in mixed} == {"train"}
    assert {r["label"] for r in mixed} == {"Powder", "Object", "Error"} and compared["tiles"] < len(mixed)
    made = client.post("/api/finetune/current", json={}, headers=AUTH).json()
    assert Path(made["model"]).is_file() and made["model"] in made["monitor"]
    assert client.get("/api/model").json()["path"] == made["model"]
    assert LabelStore(env["config"].labels_path).current_model() == made["model"]


def test_proposals_of_tiles_to_label(env, tmp_path):
    config = AppConfig([env["db"]], [], env["model"], labels=tmp_path / "fresh.sqlite", token=TOKEN)
    client = TestClient(create_app(config), base_url="http://127.0.0.1")  # no labels yet: every tile can be proposed
    tiles = client.get("/api/sets/b0-1/proposals", params={"count": 6}).json()
    assert len(tiles) == 6 and all(set(t) >= {"index", "layer", "row", "col", "predicted", "why"} for t in tiles)
    assert len({(t["index"], t["row"], t["col"]) for t in tiles}) == 6
    per_layer = [sum(t["index"] == i for t in tiles) for i in range(4)]
    assert max(per_layer) == 2 and sum(per_layer) == 6  # spread over the layers, no more than its share each
    label_layers(client, "b0-1", range(4))
    assert client.get("/api/sets/b0-1/proposals", params={"count": 6}).json() == []  # every tile labelled
    assert client.get("/api/sets/b0-1/proposals", params={"count": 0}).status_code == 400
    assert client.get("/api/sets/zz/proposals").status_code == 404


def test_a_refused_fine_tune_says_why_in_its_state(env, tmp_path):
    config = AppConfig([env["db"]], [], env["model"], labels=tmp_path / "few.sqlite", token=TOKEN)
    client = TestClient(create_app(config), base_url="http://127.0.0.1")
    label_layers(client, "b0-1", range(2))
    refused = client.post("/api/finetune", json={"epochs": 1}, headers=AUTH)
    assert refused.status_code == 400 and "at least 3 layers" in refused.json()["error"]
    state = client.get("/api/finetune").json()
    assert state["state"] == "refused" and "at least 3 layers" in state["message"]


def test_a_folder_opened_with_a_camera_is_straightened(env, tmp_path):
    from slmcnn.camera import CameraCalibration

    camera = save_camera(
        tmp_path / "camera.json", CameraCalibration([[4, 6], [380, 2], [383, 379], [1, 383]], size=384), None
    )
    config = AppConfig([], [env["data"]], env["model"], camera, labels=tmp_path / "labels.sqlite", token=TOKEN)
    client = TestClient(create_app(config), base_url="http://127.0.0.1")
    opened = client.post("/api/sets", json={"folder": "photos"}, headers=AUTH).json()
    layer = client.get(f"/api/sets/{opened['id']}/layers/1").json()
    assert layer["straightened"] and layer["anomaly"] is None and (layer["width"], layer["rows"]) == (384, 3)
    assert client.get(f"/api/sets/{opened['id']}/layers/1/image").status_code == 200


def test_a_build_grows_while_the_monitor_writes(env, tiny_build):
    client = env["client"]
    before = client.get("/api/sets/b0-1").json()
    watch = env["root"] / "camera"
    shutil.copy(tiny_build / "layers" / "00005.png", watch / "00005.png")
    args = ["monitor", watch, "--db", env["db"], "--model", env["model"], "--exit-when-idle", "0.5"]
    assert run_cli(*args, "--settle", "0.05", "--backend", "torch").returncode == 0
    after = client.get("/api/sets/b0-1").json()  # what the page's 2 s poll reads
    assert len(after["layer_list"]) == len(before["layer_list"]) + 1 == 5


def test_set_a_camera_up_by_clicking_corners_and_picking_good_layers(tiny_build, tmp_path, shipped_model):
    from slmcnn.checkpoint import default_model_path
    from slmcnn.profile import load_camera

    frames = tmp_path / "data" / "frames"
    frames.mkdir(parents=True)
    for path in sorted((tiny_build / "layers").glob("*.png"))[:6]:
        shutil.copy(path, frames / path.name)
    config = AppConfig([], [tmp_path / "data"], default_model_path(), labels=tmp_path / "labels.sqlite", token=TOKEN)
    client = TestClient(create_app(config), base_url="http://127.0.0.1")
    opened = client.post("/api/sets", json={"folder": "frames"}, headers=AUTH).json()
    set_id = opened["id"]
    assert "camera-link" in client.get(f"/sets/{set_id}").text
    page = client.get(f"/sets/{set_id}/camera")
    assert page.status_code == 200 and "/static/camera.js" in page.text
    assert client.get("/static/camera.js").status_code == 200
    raw = client.get(f"/api/sets/{set_id}/layers/0/raw")
    assert raw.headers["content-type"] == "image/jpeg" and float(raw.headers["x-scale"]) == 1.0
    proposal = client.get(f"/api/sets/{set_id}/camera?index=0").json()
    assert (proposal["width"], proposal["height"]) == (384, 384) and "doubts" in proposal
    corners = [[2, 3], [381, 1], [383, 382], [0, 380]]
    for bad in ([[1, 2]] * 3, [[0, 0], [1, 1], [2, "x"], [3, 3]], "0,0,1,1"):
        assert client.post(f"/api/sets/{set_id}/camera", json={"corners": bad}, headers=AUTH).status_code == 400
    too_few = {"corners": corners, "good": [0, 1]}
    assert "at least 4" in client.post(f"/api/sets/{set_id}/camera", json=too_few, headers=AUTH).json()["error"]
    geometry = client.post(f"/api/sets/{set_id}/camera", json={"corners": corners, "size": 384}, headers=AUTH)
    assert geometry.status_code == 200 and geometry.json()["profile"] is None
    target = config.work / "camera.json"
    assert load_camera(target)[0].corners == [[2.0, 3.0], [381.0, 1.0], [383.0, 382.0], [0.0, 380.0]]
    body = {"corners": corners, "size": 384, "good": [0, 1, 2, 3], "error_threshold": 1.25}
    refused = client.post(f"/api/sets/{set_id}/camera", json=body, headers=AUTH)
    assert refused.status_code == 400 and "exists" in refused.json()["error"]  # never over a file unasked
    written = client.post(f"/api/sets/{set_id}/camera", json={**body, "replace": True}, headers=AUTH)
    assert written.status_code == 200, written.text
    calibration, profile = load_camera(target)
    assert profile.frames == 4 and profile.error_threshold == 1.25 and len(profile.meta["good_frames"]) == 4
    layer = client.get(f"/api/sets/{set_id}/layers/5").json()
    assert layer["straightened"] and layer["anomaly"] is not None  # the app judges with it at once


@pytest.mark.parametrize("frames_kept", [True, False])
def test_making_a_model_current_rebuilds_the_camera_profile_or_says_why_not(
    tiny_build, shipped_model, tmp_path, frames_kept
):
    import copy

    import torch

    import slmcnn
    from slmcnn.app.workspace import Workspace
    from slmcnn.checkpoint import default_model_path, model_hash, save_model
    from slmcnn.profile import load_camera, save_camera

    good = tmp_path / "good"
    good.mkdir()
    for path in sorted((tiny_build / "layers").glob("*.png"))[:4]:
        shutil.copy(path, good / path.name)
    camera = save_camera(
        tmp_path / "camera.json", None, slmcnn.calibrate(sorted(good.iterdir()), model=shipped_model, full_frame=True)
    )
    tuned = copy.deepcopy(shipped_model)
    with torch.no_grad():
        next(tuned.parameters()).add_(1e-3)  # a fine-tune, as far as the profile can tell
    new = save_model(tuned, tmp_path / "tuned.safetensors", shipped_model.info)
    if not frames_kept:
        shutil.rmtree(good)
    ws = Workspace(AppConfig([], [], default_model_path(), camera, labels=tmp_path / "labels.sqlite"))
    assert ws.backend.name == "torch+profile"
    ws.make_current(new, "tester")
    if frames_kept:
        rebuilt = load_camera(ws.camera_file)[1]
        assert rebuilt.model["sha256"] == model_hash(ws.model) and ws.camera_note is None
        assert ws.backend.name == "torch+profile"
    else:
        assert ws.camera_file is None and "good frames are gone" in ws.camera_note
        assert ws.backend.name != "torch+profile"  # not applied with other weights, and the page says why


def test_requests_of_the_wrong_types_are_refused_with_a_message(env):
    client = env["client"]
    url = "/api/sets/b0-1/layers/0/labels"
    before = client.get("/api/sets/b0-1/layers/0").json()["labels"]
    for body, status in (
        ({"row": 0, "col": 0, "cls": True}, 400),  # not stored as Object
        ({"row": 0, "col": 0, "cls": "Error"}, 400),
        ({"row": True, "col": 0, "cls": 1}, 404),
        ({"row": "0", "col": 0, "cls": 1}, 404),
        ({"row": 0, "col": 0, "cls": 1, "checked": "yes"}, 400),
        ({"labels": [1, 2]}, 400),
    ):
        answer = client.post(url, json=body, headers=AUTH)
        assert answer.status_code == status and "error" in answer.json(), (body, answer.text)
    for body in ({"epochs": "abc"}, {"epochs": 1, "lr": "fast"}, {"epochs": True}):
        assert client.post("/api/finetune", json=body, headers=AUTH).status_code == 400, body
    assert client.get("/api/sets/b0-1/layers/0").json()["labels"] == before  # nothing stored


def test_a_locked_labels_database_is_a_503_once_not_a_500_forever(env):
    import sqlite3

    client, path = env["client"], env["config"].labels_path
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    store = client.app.state.workspace.store
    store._conn.execute("PRAGMA busy_timeout = 100")
    try:
        busy = client.post("/api/sets/b0-1/layers/1/labels", json={"row": 0, "col": 0, "cls": 0}, headers=AUTH)
        assert busy.status_code == 503 and "try again" in busy.json()["error"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store._conn.execute("PRAGMA busy_timeout = 5000")
    done = client.post("/api/sets/b0-1/layers/1/labels", json={"row": 0, "col": 0, "cls": 0}, headers=AUTH)
    assert done.status_code == 200 and client.get("/api/sets/b0-1/layers/1").json()["labels"][0][0] == 0


def test_app_refuses_a_labels_file_that_is_not_sqlite(tmp_path):
    not_sqlite = tmp_path / "labels.sqlite"
    not_sqlite.write_text("these are my notes, not a database")
    done = run_cli("app", "--labels", not_sqlite, "--port", "1")
    assert done.returncode != 0 and "not a usable labels database" in done.stderr
    assert "Traceback" not in done.stderr and not_sqlite.read_text() == "these are my notes, not a database"


def test_a_stored_layer_whose_photo_was_replaced_says_so(tiny_build, tiny_model_file, tmp_path):
    """One folder, build after build: build 2 writes 00001.png again; build 1's stored layer 1 must
    show the photo it was classified from (the kept thumbnail), and refuse labels, IG and export."""
    db = monitored_build(tiny_build, tiny_model_file, tmp_path, 2)
    config = AppConfig([db], [], tiny_model_file, labels=tmp_path / "labels.sqlite", token=TOKEN)
    client = TestClient(create_app(config), base_url="http://127.0.0.1")
    label = {"row": 0, "col": 0, "cls": 0}
    assert client.post("/api/sets/b0-1/layers/0/labels", json=label, headers=AUTH).status_code == 200
    assert client.get("/api/sets/b0-1/layers/0").json()["photo_changed"] is False
    photo = tmp_path / "camera" / "00001.png"
    shutil.copy(tiny_build / "layers" / "00005.png", photo)  # the next build's first layer, same name
    layer = client.get("/api/sets/b0-1/layers/0").json()
    assert layer["photo_changed"] is True
    image = client.get("/api/sets/b0-1/layers/0/image")
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert client.post("/api/sets/b0-1/layers/0/labels", json=label, headers=AUTH).status_code == 409
    assert client.get("/api/sets/b0-1/layers/0/explain?row=0&col=0").status_code == 409
    client.post("/api/sets/b0-1/layers/1/labels", json=label, headers=AUTH)
    export = client.post("/api/export", headers=AUTH).json()
    assert export["replaced"] == ["00001.png"] and export["tiles"] == 1


def test_builds_of_several_machines_are_listed_by_machine(tiny_build, tiny_model_file, tmp_path):
    from slmcnn.monitoring import Database

    db = Database(tmp_path / "shop.sqlite")
    db.new_build(str(tmp_path / "a"), "job 7", machine="m290-a")
    db.new_build(str(tmp_path / "b"), "job 7", machine="m290-b")
    config = AppConfig([tmp_path / "shop.sqlite"], [], tiny_model_file, labels=tmp_path / "labels.sqlite", token=TOKEN)
    client = TestClient(create_app(config), base_url="http://127.0.0.1")
    assert [s["name"] for s in client.get("/api/sets").json()] == ["job 7 (m290-a)", "job 7 (m290-b)"]


def test_a_review_teaches_the_fine_maps_and_undo_forgets_it(env):
    from slmcnn.teaching import Lessons

    client, lessons = env["client"], Lessons(env["config"].lessons_path)
    alerts = client.get("/api/sets/b0-1").json()["alerts"]
    url = "/api/sets/b0-1/alerts/{}"
    before = len(lessons)
    confirmed = client.post(url.format(alerts[1]["id"]), json={"verdict": "confirmed"}, headers=AUTH).json()
    assert confirmed["lesson"] and confirmed["lessons"] == str(lessons.folder)
    rejected = client.post(url.format(alerts[2]["id"]), json={"verdict": "false_alarm"}, headers=AUTH).json()
    taught = {x.id: x for x in lessons}
    assert len(taught) == before + 2
    assert taught[confirmed["lesson"]].verdict == "defect" and taught[rejected["lesson"]].verdict == "sound"
    image, mask = lessons.load(taught[rejected["lesson"]])
    assert image.shape[:2] == mask.shape and mask.all()  # the alert's Error tiles cover the 384 px bed
    again = client.post(url.format(alerts[2]["id"]), json={"verdict": "confirmed"}, headers=AUTH).json()
    assert {x.id: x.verdict for x in lessons}.get(again["lesson"]) == "defect" and len(lessons) == before + 2
    for alert in alerts[1:3]:
        assert client.request("DELETE", url.format(alert["id"]), json={}, headers=AUTH).json()["lessons_forgotten"] == 1
    assert len(lessons) == before and not (lessons.folder / f"{rejected['lesson']}.png").exists()


def test_the_start_page_gives_each_build_its_machine_grades_open_alerts_and_live(env):
    """#38 item 7: the operator's overview; 'live' only while a monitor holds the build's folder."""
    from slmcnn.monitoring import Database

    client = env["client"]
    build = {s["id"]: s for s in client.get("/api/sets").json()}["b0-1"]
    summary = client.get("/api/sets/b0-1").json()
    graded = [layer["grade"] for layer in summary["layer_list"]]
    assert build["build"] == "camera" and build["machine"] == socket.gethostname() and build["grades"]["critical"] >= 4
    assert build["grades"] == {g: graded.count(g) for g in set(graded)}  # the layers the build page lists
    assert build["alerts_open"] == sum(1 for a in summary["alerts"] if a["verdict"] is None) > 0
    assert 0 < time.time() - build["last_layer"] < 3600 and build["live"] is False  # its monitor has stopped
    db = Database(env["db"])
    held = db.lock(str((env["root"] / "camera").resolve()), build["machine"])  # as a running monitor holds it
    try:
        assert client.get("/api/sets/b0-1").json()["live"] is True
    finally:
        held.release()
    assert client.get("/api/sets").json()[0]["live"] is False
    first = next(a for a in summary["alerts"] if a["verdict"] is None)
    client.post(f"/api/sets/b0-1/alerts/{first['id']}", json={"verdict": "confirmed"}, headers=AUTH)
    assert client.get("/api/sets").json()[0]["alerts_open"] == build["alerts_open"] - 1  # a verdict closes one
    client.request("DELETE", f"/api/sets/b0-1/alerts/{first['id']}", json={}, headers=AUTH)


def test_photo_folders_under_data_are_listed_to_pick(env):
    folders = env["client"].get("/api/folders").json()
    assert folders == [{"folder": "photos", "photos": 3}]  # not the link to a folder outside --data


def test_the_layer_page_gets_the_layers_grade_and_regions(env):
    client = env["client"]
    layer = client.get("/api/sets/b0-1/layers/1").json()
    alert = next(a for a in client.get("/api/sets/b0-1").json()["alerts"] if a["index"] == 1)
    assert layer["grade"] == "critical" and layer["why"] == alert["message"] and layer["regions"] == alert["regions"]
    opened = client.post("/api/sets", json={"folder": "photos"}, headers=AUTH).json()
    photo = client.get(f"/api/sets/{opened['id']}/layers/0").json()
    assert photo["grade"] is None and photo["regions"] == []  # a folder's photo is not graded


def test_the_good_layer_picker_gets_thumbnails(env):
    from PIL import Image

    client = env["client"]
    opened = client.post("/api/sets", json={"folder": "photos"}, headers=AUTH).json()
    small = client.get(f"/api/sets/{opened['id']}/layers/0/raw", params={"side": 64})
    assert small.status_code == 200 and max(Image.open(io.BytesIO(small.content)).size) <= 64
    assert client.get(f"/api/sets/{opened['id']}/layers/0/raw", params={"side": 5}).status_code == 400


def test_a_request_of_the_wrong_shape_is_a_400_naming_the_field(env):
    """app/models.py: the request models refuse a body in one line that says where it is wrong,
    and a build's summary holds every field of its response model."""
    from slmcnn.app.models import SetSummary

    client = env["client"]
    for url, body, where in (
        ("/api/finetune", {"epochs": "abc"}, "epochs"),
        ("/api/finetune", {"epochs": 5, "lr": 2}, "lr"),
        ("/api/sets/b0-1/alerts/1", {"verdict": "maybe"}, "verdict"),
        ("/api/sets/b0-1/layers/0/labels", {"labels": [{"row": 0, "col": 0, "cls": 1}, 7]}, "labels.1"),
        ("/api/sets", {"folder": ["photos"]}, "folder"),
        ("/api/sets/b0-1/layers/0/labels", [1, 2], "the request"),
    ):
        answer = client.post(url, json=body, headers=AUTH)
        error = answer.json()["error"]
        assert answer.status_code == 400 and error.startswith(f"{where}: ") and "\n" not in error, (body, error)
    assert set(client.get("/api/sets/b0-1").json()) == set(SetSummary.model_fields)
