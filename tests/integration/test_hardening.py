"""Issue #16: nothing overwritten, no layer lost, one clear line for every bad input. One test per
example of the issue, fault injection (read-only output, full disk, a slowly written layer)."""

import errno
import json
import shutil
import sqlite3
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from slmcnn import files, images
from slmcnn.checkpoint import ModelInfo, save_model
from slmcnn.errors import DatabaseError, ImageReadError
from slmcnn.model import create_model
from tests.conftest import run_cli


def one_line(result, code=2, *words):
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels and holds (almost) nothing."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))  # noqa: E731
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def layer_png(path: Path, seed: int = 0, side: int = 256) -> Path:
    images.write_png(path, np.random.default_rng(seed).integers(90, 200, (side, side, 3), dtype=np.uint8))
    return path


# ---------------------------------------------------------------- user files overwritten or lost


def test_export_and_report_never_replace_a_file_without_force(tiny_model_file, tmp_path, monkeypatch):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    one_line(run_cli("export", tiny_model_file, "--out", notes), 2, "exists", "--force")
    one_line(run_cli("report", tmp_path / "b.sqlite", "--out", notes), 2, "exists", "--force")
    assert notes.read_text() == "mine"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "report.html").write_text("an older report")
    one_line(run_cli("report", tmp_path / "b.sqlite"), 2, "report.html exists")
    assert (tmp_path / "report.html").read_text() == "an older report"
    one_line(run_cli("export", tiny_model_file, "--out", tiny_model_file, "--force"), 2, "is an input")
    one_line(run_cli("export", tiny_model_file, "--out", tmp_path), 2, "is a folder")


def test_export_with_force_replaces_whole_and_a_full_disk_leaves_nothing_behind(tiny_model_file, tmp_path, monkeypatch):
    out = tmp_path / "m.onnx"
    out.write_text("old")
    assert run_cli("export", tiny_model_file, "--out", out, "--force").returncode == 0
    good = out.read_bytes()
    assert len(good) > 1000

    real = torch.onnx.export

    def full_disk(model, args, f, **kw):
        Path(f).write_bytes(good[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch.onnx, "export", full_disk)
    one_line(run_cli("export", tiny_model_file, "--out", out, "--force"), 2, "disk is full", str(out))
    assert out.read_bytes() == good  # the old file is still whole
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary left
    monkeypatch.setattr(torch.onnx, "export", real)


def test_train_refuses_a_used_run_folder(tiny_build, tmp_path):
    run = tmp_path / "run1"
    run.mkdir()
    (run / "model.safetensors").write_text("an earlier model")
    args = ("train", tiny_build, "--out", run, "--arch", "slmcnn-tiny", "--epochs", "1", "--quiet")
    one_line(run_cli(*args), 2, "not empty", "--force")
    assert (run / "model.safetensors").read_text() == "an earlier model"


def test_calibrate_never_overwrites_its_input(tmp_path):
    frame = tmp_path / "frame.preview.png"
    layer_png(frame, side=128)
    before = frame.read_bytes()
    for force in ((), ("--force",)):
        args = ("calibrate", frame, "--out", tmp_path / "frame.json", "--corners", "0,0,127,0,127,127,0,127")
        one_line(run_cli(*args, *force), 2, "is an input")
    assert frame.read_bytes() == before and not (tmp_path / "frame.json").exists()


def test_read_only_and_proc_outputs_are_one_line(tiny_model_file, tiny_build, tmp_path, monkeypatch):
    layer = tiny_build / "layers" / sorted(p.name for p in (tiny_build / "layers").iterdir())[0]
    one_line(run_cli("predict-layer", layer, "--out", "/proc/slmcnn-out", "--model", tiny_model_file), 2, "/proc")
    one_line(run_cli("export", tiny_model_file, "--out", "/proc/m.onnx"), 2, "/proc/m.onnx")
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    one_line(run_cli("evaluate", tiny_model_file, tiny_build, "--out", notes), 2, "is a file")
    real_open = files.os.open

    def read_only(path, flags, mode=0o777):
        if str(path).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, mode)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(files.os, "open", read_only)
    args = ("predict-layer", layer, "--out", tmp_path / "ro", "--model", tiny_model_file)
    one_line(run_cli(*args), 2, "read-only")


def outputs_of_every_command(build: Path, model: Path, out: Path, db: Path) -> list[tuple]:
    layer = build / "layers" / "00001.png"
    return [
        ("train", build, "--out", out, "--arch", "slmcnn-tiny", "--epochs", "1", "--quiet"),
        ("evaluate", model, build, "--out", out),
        ("synth", out, "--layers", "1", "--size", "64", "--patch", "32"),
        ("predict-layer", layer, "--out", out, "--model", model),
        (
            "predict-patches",
            build / "patches" / "Powder",
            "--explain",
            "--out",
            out,
            "--model",
            model,
            "--backend",
            "torch",
        ),
        ("export", model, "--out", out),
        ("calibrate", layer, "--out", out, "--corners", "0,0,300,0,300,300,0,300"),
        ("monitor", build / "layers", "--db", db, "--out", out, "--model", model, "--backend", "torch"),
        ("report", db, "--out", out),
    ]


@pytest.mark.parametrize("where", ["/proc/slmcnn-out", "file", "folder"])
def test_every_command_says_one_line_for_an_output_it_cannot_use(tiny_build, tiny_model_file, tmp_path, where):
    """Under /proc (read-only, nothing can be made there), an existing file, an existing folder."""
    out = Path(where) if where.startswith("/") else tmp_path / where
    if where == "file":
        out.write_text("mine")
    elif where == "folder":
        out.mkdir()
        (out / "mine.txt").write_text("mine")
    monitor_db = tmp_path / "m.sqlite"
    for args in outputs_of_every_command(tiny_build, tiny_model_file, out, monitor_db):
        if args[0] == "monitor" and where == "folder":
            continue  # the monitor goes on in its folder after a restart: a used one is right
        code = 1 if args[0] == "synth" and where != "folder" else 2  # synth's own folder check; else the OS said no
        one_line(run_cli(*args), code, "/proc" if where[0] == "/" else out.name)
    if where != "/proc/slmcnn-out":
        assert (out.read_text() if where == "file" else (out / "mine.txt").read_text()) == "mine"


# ---------------------------------------------------------------- bad input: one line each


def test_bad_numbers_are_one_line(tiny_build, tiny_model_file, tmp_path):
    train = ("train", tiny_build, "--out", tmp_path / "r", "--quiet")
    one_line(run_cli(*train, "--lr", "-1"), 2, "--lr")
    one_line(run_cli(*train, "--lr", "nan"), 2, "--lr")
    one_line(run_cli(*train, "--epochs", "0"), 2, "--epochs")
    one_line(run_cli(*train, "--batch", "-3"), 2, "--batch")
    layer = tiny_build / "layers"
    predict = ("predict-layer", layer, "--model", tiny_model_file)
    one_line(run_cli(*predict, "--out", tmp_path / "p1", "--stride", "0"), 2, "--stride")
    one_line(run_cli(*predict, "--out", tmp_path / "p2", "--stride", "200"), 2, "--stride", "--patch")
    one_line(run_cli(*predict, "--out", tmp_path / "p3", "--patch", "64"), 2, "--patch 64", "128")
    one_line(run_cli(*predict, "--out", tmp_path / "p4", "--truth", tmp_path / "nope"), 2, "--truth")
    one_line(run_cli(*predict, "--out", tmp_path / "p5", "--workers", "0"), 2, "--workers")


def test_synth_config_of_the_wrong_type(tmp_path):
    for config in ({"grain": "coarse"}, {"falloff": [0.5, 0.1]}, {"jpeg_share": [1, 2, 3]}, [1, 2]):
        (tmp_path / "c.json").write_text(json.dumps(config))
        one_line(run_cli("synth", tmp_path / "b", "--config", tmp_path / "c.json", "--layers", "1"), 2, "--config")
    (tmp_path / "c.json").write_bytes(b"\xff\xfe{")
    one_line(run_cli("synth", tmp_path / "b", "--config", tmp_path / "c.json"), 2, "--config")


def test_csv_without_label_and_not_utf8(tmp_path):
    (tmp_path / "a.csv").write_text("Image;Label\nx.png\n")
    one_line(run_cli("train", tmp_path / "a.csv", "--out", tmp_path / "r"), 2, "line 2", "Label")
    (tmp_path / "b.csv").write_bytes("Image;Label\nx\xe9.png;Powder\n".encode("latin-1"))
    one_line(run_cli("train", tmp_path / "b.csv", "--out", tmp_path / "r"), 2, "UTF-8")


def crafted_model(path: Path, **info) -> Path:
    save_model(create_model("slmcnn-tiny"), path, ModelInfo(**{"arch": "slmcnn-tiny", **info}))
    return path


def test_crafted_model_metadata_and_nan_weights(tiny_build, tmp_path):
    layer = tiny_build / "layers"
    for n, info in enumerate([{"patch": "128"}, {"patch": 64}, {"classes": ["a"]}, {"arch": ["x"]}, {"training": 5}]):
        model = crafted_model(tmp_path / f"m{n}.safetensors", **info)
        one_line(run_cli("predict-layer", layer, "--out", tmp_path / f"o{n}", "--model", model), 2, str(model))
    model = create_model("slmcnn-tiny")
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    save_model(model, tmp_path / "nan.safetensors", ModelInfo(arch="slmcnn-tiny"))
    one_line(
        run_cli("predict-layer", layer, "--out", tmp_path / "o", "--model", tmp_path / "nan.safetensors"), 2, "NaN"
    )


def test_database_urls_and_files_are_one_line_without_password(tmp_path, monkeypatch):
    from slmcnn.monitoring import db
    from slmcnn.monitoring.db import connection

    notes, folder = tmp_path / "notes.txt", tmp_path / "folder"
    notes.write_text("not a database")
    folder.mkdir()
    for where, word in (
        (notes, "not an SQLite database"),
        (folder, "is a folder"),
        ("foo://x/y", "unknown database kind"),
    ):
        one_line(run_cli("report", where, "--out", tmp_path / "r.html"), 2, word)
    monkeypatch.setattr(connection.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatabaseError) as caught:
        db.Database("postgresql://bob:secret@db.example/builds")
    assert "slmcnn[postgres]" in str(caught.value) and "secret" not in str(caught.value)
    assert "bob:***@db.example" in str(caught.value)


def test_report_leaves_an_unrelated_sqlite_file_alone(tmp_path):
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("create table notes (text)")
    one_line(run_cli("report", other, "--out", tmp_path / "r.html"), 2, "not a monitor's database")
    with sqlite3.connect(other) as conn:
        assert conn.execute("select name from sqlite_master").fetchall() == [("notes",)]


def test_training_on_one_class_warns(tmp_path, write_image):
    for i in range(6):
        write_image(f"one/Powder/{i}.png", np.full((128, 128, 3), 100 + i, np.uint8))
    result = run_cli(
        "train", tmp_path / "one", "--out", tmp_path / "r", "--arch", "slmcnn-tiny", "--epochs", "1", "--quiet"
    )
    assert result.returncode == 0 and "one class only" in result.stderr


def test_alert_rules_and_label_rules_refuse_impossible_numbers(tmp_path):
    base = ("synth", tmp_path / "b", "--layers", "1", "--size", "64", "--patch", "32")
    one_line(run_cli(*base, "--error-min-pixels", "-5"), 2, "--error-min-pixels")
    one_line(run_cli(*base, "--object-min-fraction", "nan"), 2, "--object-min-fraction")
    (tmp_path / "w").mkdir()
    monitor = ("monitor", tmp_path / "w", "--db", tmp_path / "d.sqlite", "--exit-when-idle", "0.1")
    one_line(run_cli(*monitor, "--alert-persist", "-3"), 2, "K/M")
    one_line(run_cli(*monitor, "--alert-persist", "6/5"), 2, "persistence rule")
    one_line(run_cli(*monitor, "--alert-sure", "2"), 2, "sure")


def test_ctrl_c_is_one_line_and_exit_130(tmp_path, monkeypatch):
    import slmcnn.synth

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(slmcnn.synth, "generate_build", interrupted)
    assert one_line(run_cli("synth", tmp_path / "b", "--layers", "1"), 130) == "slmcnn synth: interrupted"


# ---------------------------------------------------------------- image size limits before decoding


def test_huge_images_are_refused_from_their_header(tmp_path):
    import tifffile

    big = tmp_path / "big.png"
    big.write_bytes(png_header(50000, 50000))
    with pytest.raises(ImageReadError, match="megapixels"):
        images.read(big)
    tiles = (np.zeros((1024, 1024), np.uint8) for _ in range(20 * 20))
    tiff = tmp_path / "big.tif"
    tifffile.imwrite(tiff, tiles, shape=(20480, 20480), dtype=np.uint8, tile=(1024, 1024), compression="zlib")
    assert tiff.stat().st_size < 2_000_000
    with pytest.raises(ImageReadError, match="megapixels"):
        images.read(tiff)
    limits = images.LIMITS.max_pixels, images.LIMITS.max_bytes
    try:
        images.set_limits(max_mb=1)
        with pytest.raises(ImageReadError, match="MB"):
            images.read(layer_png(tmp_path / "a.png", side=1024))
    finally:
        images.LIMITS.max_pixels, images.LIMITS.max_bytes = limits


def test_a_camera_file_with_a_huge_size_is_refused(tmp_path, tiny_build, tiny_model_file):
    camera = tmp_path / "camera.json"
    camera.write_text(json.dumps({"corners": [[0, 0], [100, 0], [100, 100], [0, 100]], "size": 60000}))
    args = ("predict-layer", tiny_build / "layers", "--out", tmp_path / "o", "--camera", camera)
    one_line(run_cli(*args, "--model", tiny_model_file), 2, "megapixels")


# ---------------------------------------------------------------- the monitor


def monitor_for(watch: Path, db: Path, model: Path, out: Path | None = None, **config):
    from slmcnn import create_backend, load_model
    from slmcnn.monitoring import Database, Monitor, MonitorConfig
    from slmcnn.pipeline import RunOptions

    net = load_model(model)
    options = RunOptions(workers=1, model_name="tiny")
    return Monitor(MonitorConfig(watch, out, **config), Database(db), create_backend(net, "torch", "fp32"), options)


def stored(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("select file, status from layers order by id").fetchall()


def test_a_slowly_written_layer_is_classified(tiny_model_file, tmp_path):
    watch = tmp_path / "camera"
    watch.mkdir()
    data = layer_png(tmp_path / "whole.png", side=384).read_bytes()
    monitor = monitor_for(watch, tmp_path / "b.sqlite", tiny_model_file, settle=0.5, retries=3, retry_wait=2.0)

    def write_slowly():
        with open(watch / "00001.png", "wb") as handle:
            for k in range(4):
                handle.write(data[k * len(data) // 4 : (k + 1) * len(data) // 4])
                handle.flush()
                time.sleep(1.2)

    writer = threading.Thread(target=write_slowly)
    writer.start()
    time.sleep(0.3)
    monitor.run(exit_when_idle=1.0)
    writer.join()
    assert stored(tmp_path / "b.sqlite") == [("00001.png", "done")]


def test_a_failed_layer_is_classified_again_when_its_file_changes(tiny_model_file, tmp_path):
    watch, db = tmp_path / "camera", tmp_path / "b.sqlite"
    watch.mkdir()
    (watch / "00001.png").write_bytes(layer_png(tmp_path / "x.png").read_bytes()[:200])
    monitor = monitor_for(watch, db, tiny_model_file, settle=0.0, retries=2, retry_wait=0.0)
    while not monitor.process_ready():
        pass
    assert stored(db) == [("00001.png", "failed")]
    with sqlite3.connect(db) as conn:  # tried twice, each try finished: not a layer that killed the monitor
        assert "poison" not in conn.execute("select message from layers").fetchone()[0]
    layer_png(tmp_path / "good.png")
    shutil.copy(tmp_path / "good.png", watch / ".tmp")
    (watch / ".tmp").replace(watch / "00001.png")
    monitor.lock.release()
    again = monitor_for(watch, db, tiny_model_file, settle=0.0)  # also after a restart
    assert again.process_ready() == 1
    assert stored(db) == [("00001.png", "done")]


def test_a_huge_layer_is_recorded_and_later_layers_go_on(tiny_model_file, tmp_path):
    watch, db = tmp_path / "camera", tmp_path / "b.sqlite"
    watch.mkdir()
    (watch / "00001.png").write_bytes(png_header(50000, 50000))
    layer_png(watch / "00002.png")
    monitor_for(watch, db, tiny_model_file, settle=0.0, retries=1).run(exit_when_idle=0.5)
    assert stored(db) == [("00001.png", "failed"), ("00002.png", "done")]
    with sqlite3.connect(db) as conn:
        assert "megapixels" in conn.execute("select message from layers where status='failed'").fetchone()[0]


@pytest.mark.parametrize("kills_the_reader", [True, False])
def test_a_layer_that_killed_the_monitor_is_recorded_as_poison(
    tiny_model_file, tmp_path, monkeypatch, kills_the_reader
):
    """Two starts died while classifying layer 1: poison only when it kills a child reading it too;
    else the monitor was killed from outside and the layer is classified (the probe runs for real)."""
    from slmcnn.monitoring import watch as watching
    from slmcnn.monitoring.db import Database
    from slmcnn.monitoring.db.records import FileStamp

    watch, db = tmp_path / "camera", tmp_path / "b.sqlite"
    watch.mkdir()
    layer_png(watch / "00001.png")
    layer_png(watch / "00002.png", 1)
    key, stamp = str(watch.resolve()), FileStamp.of(watch / "00001.png")
    machine = watching.MonitorConfig(watch).machine  # the host name
    for _ in range(2):
        Database(db).begin_attempt(key, machine, "00001.png", stamp)
    if kills_the_reader:
        monkeypatch.setattr(watching, "layer_survives", lambda path, limit: False)
    monitor_for(watch, db, tiny_model_file, settle=0.0).run(exit_when_idle=0.5)
    assert stored(db) == [("00001.png", "failed" if kills_the_reader else "done"), ("00002.png", "done")]


def test_monitor_faults_are_one_line(tiny_model_file, tmp_path, monkeypatch):
    watch, db = tmp_path / "camera", tmp_path / "b.sqlite"
    watch.mkdir()
    layer_png(watch / "00001.png")
    base = ("monitor", watch, "--db", db, "--model", tiny_model_file, "--exit-when-idle", "0.5", "--settle", "0")
    one_line(run_cli(*base, "--pattern", r"layer(\d+"), 2, "--pattern", "regular expression")
    one_line(run_cli(*base, "--pattern", r"layer\d+"), 2, "--pattern", "group")
    one_line(run_cli(*base, "--out", "/proc/live"), 2, "/proc/live")
    first = monitor_for(watch, db, tiny_model_file)
    one_line(run_cli(*base), 2, "another monitor")
    first.lock.release()

    real_replace = files.os.replace

    def full(source, target):  # every output is renamed into place: a full disk fails there at the latest
        if str(target).startswith(str(tmp_path / "live")):
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        return real_replace(source, target)

    monkeypatch.setattr(files.os, "replace", full)
    one_line(run_cli(*base, "--out", tmp_path / "live"), 2, "disk is full")
    assert stored(db) == []  # nothing stored: the restart classifies the layer
    monkeypatch.undo()
    assert run_cli(*base, "--out", tmp_path / "live").returncode == 0
    assert stored(db) == [("00001.png", "done")]


def test_an_alert_raised_again_after_a_kill_carries_the_same_id(error_model_file, tmp_path):
    watch, db, out = tmp_path / "camera", tmp_path / "b.sqlite", tmp_path / "live"
    watch.mkdir()
    layer_png(watch / "00001.png")
    first = monitor_for(watch, db, error_model_file, out, settle=0.0)
    first.build.mark_raised = lambda ids: None  # killed after the hook ran, before it was marked raised
    assert first.process_ready() == 1
    first.lock.release()
    again = monitor_for(watch, db, error_model_file, out, settle=0.0)
    again.raise_pending()
    again.raise_pending()
    delivered = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    assert len(delivered) == 2 and delivered[0] == delivered[1] and isinstance(delivered[0]["id"], int)


def test_a_slow_hook_runs_beside_classification(error_model_file, tmp_path):
    watch, db, out = tmp_path / "camera", tmp_path / "b.sqlite", tmp_path / "live"
    watch.mkdir()
    for i in range(3):
        layer_png(watch / f"{i + 1:05d}.png", i)
    hook = f"sleep 1; echo $SLMCNN_ALERT_ID >> {tmp_path / 'ids'}"
    monitor_for(watch, db, error_model_file, out, settle=0.0, on_alert=hook).run(exit_when_idle=0.3)
    with sqlite3.connect(db) as conn:
        times = [t for (t,) in conn.execute("select processed from layers order by number")]
        raised = conn.execute("select count(*) from alerts where raised = 1").fetchone()[0]
    assert times[-1] - times[0] < 1.5  # three 1 s hooks in line would take 2 s or more between them
    assert raised == 3 and sorted((tmp_path / "ids").read_text().split()) == ["1", "2", "3"]


def test_outputs_of_one_run_never_share_a_name_nor_replace_an_input(tmp_path, tiny_model_file, write_image):
    from slmcnn.outputs import unique_stems

    a, b = tmp_path / "a", tmp_path / "b"
    paths = [a / "x.png", a / "x.jpg", b / "x.png", a / "a_x.png", a / "y.png", a / "y.png"]
    names = unique_stems(paths)
    assert len(names) == 5 and len(set(names.values())) == 5, names
    frame = np.full((128, 128, 3), 120, np.uint8)
    write_image("in/x.png", frame)
    write_image("in/x.jpg", frame)
    out = tmp_path / "out"
    done = run_cli("predict-layer", tmp_path / "in", "--out", out, "--model", tiny_model_file, "--backend", "torch")
    assert done.returncode == 0, done.stderr
    assert len(list(out.glob("*.json"))) == 2
    shutil.copy(out / "in_x_png.overlay.png", tmp_path / "in" / "in_x_png.overlay.png")
    inputs = tmp_path / "in"
    before = {p.name: p.read_bytes() for p in inputs.iterdir()}
    again = run_cli(
        "predict-layer", inputs, "--out", inputs, "--force", "--model", tiny_model_file, "--backend", "torch"
    )
    assert again.returncode != 0 and "would replace an input" in again.stderr
    assert {p.name: p.read_bytes() for p in inputs.iterdir()} == before


def test_calibrate_never_replaces_a_profile_s_arrays_without_force(tmp_path):
    (tmp_path / "camera.profile.safetensors").write_bytes(b"someone's profile")
    frames = [str(tmp_path / f"f{i}.png") for i in range(4)]
    done = run_cli("calibrate", *frames, "--out", tmp_path / "camera.json", "--full-frame")
    assert done.returncode != 0 and "camera.profile.safetensors exists" in done.stderr
    assert (tmp_path / "camera.profile.safetensors").read_bytes() == b"someone's profile"


def test_file_names_that_are_not_utf8_are_stored_once_and_shown(tmp_path, tiny_model_file, write_image):
    import os

    from slmcnn.monitoring import Database

    folder = tmp_path / "camera"
    write_image("camera/layer_0001.png", np.full((128, 128, 3), 120, np.uint8))
    write_image("camera/plain.png", np.full((128, 128, 3), 90, np.uint8))
    os.rename(folder / "plain.png", os.fsencode(folder) + b"/layer_\xff_0002.png")
    common = ["--model", tiny_model_file, "--backend", "torch"]
    done = run_cli("predict-layer", folder, "--out", tmp_path / "out", *common)
    assert done.returncode == 0, done.stderr
    assert "layer_\\xff_0002.png" in (tmp_path / "out" / "summary.csv").read_text()
    db = tmp_path / "m.sqlite"
    for _ in range(2):  # stored once, and a restart is no crash loop
        again = run_cli("monitor", folder, "--db", db, "--exit-when-idle", "0.3", "--settle", "0", *common)
        assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    database = Database(db)
    files = sorted(layer.file for build in database.builds() for layer in database.layers(build.id))
    assert files == ["layer_0001.png", "layer_\\xff_0002.png"]


def test_a_huge_sparse_file_named_like_a_layer_is_not_read_into_memory(tmp_path, tiny_model_file, write_image):
    from slmcnn.monitoring import Database

    folder = tmp_path / "camera"
    write_image("camera/layer_0001.png", np.full((128, 128, 3), 120, np.uint8))
    with open(folder / "layer_0002.png", "wb") as handle:
        handle.truncate(3 * 2**30)  # 3 GB of nothing, larger than any image read
    common = ["--model", tiny_model_file, "--backend", "torch", "--retries", "1"]
    for _ in range(2):
        done = run_cli(
            "monitor", folder, "--db", tmp_path / "m.sqlite", "--exit-when-idle", "0.3", "--settle", "0", *common
        )
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    database = Database(tmp_path / "m.sqlite")
    stored = {layer.file: layer.status for build in database.builds() for layer in database.layers(build.id)}
    assert stored == {"layer_0001.png": "done", "layer_0002.png": "failed"}


def test_more_inputs_that_are_one_line(tmp_path, tiny_build, tiny_model_file):
    frames = [str(p) for p in sorted((tiny_build / "layers").glob("*.png"))[:4]]
    cases = [
        ("predict-layer", frames[0], "--out", tmp_path / "o", "--max-megapixels", "inf"),
        ("synth", tmp_path / "s", "--size", "200000", "--layers", "1"),
        ("app", "--port", "70000"),
        ("calibrate", *frames, "--full-frame", "--out", tmp_path / "no" / "such" / "camera.json"),
    ]
    for args in cases:
        done = run_cli(*args)
        assert "Traceback" not in done.stderr, (args, done.stderr)
        if args[0] == "calibrate":  # a folder that does not exist is made, as for every output
            assert done.returncode == 0 and (tmp_path / "no" / "such" / "camera.profile.safetensors").is_file()
            continue
        assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
