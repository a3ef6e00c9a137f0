"""What an operator is told around each command: where the monitor looks and what it stored, what
synth --live writes, the order photos are taken in, and when to calibrate first."""

import os
import shutil

from conftest import run_cli
from slmcnn.grading import uncalibrated_advice
from slmcnn.monitoring.operator import watch_notes
from slmcnn.outputs import in_layer_order


def test_an_empty_or_nested_watch_folder_is_told(tmp_path):
    assert "holds no photos yet" in watch_notes(tmp_path)[0]
    (tmp_path / "build1" / "layers").mkdir(parents=True)
    (tmp_path / "build1" / "layers" / "00001.png").write_bytes(b"x")
    (tmp_path / "build1" / "patches" / "Error").mkdir(parents=True)
    for i in range(3):  # more photos than layers/ holds, but patches, not layers
        (tmp_path / "build1" / "patches" / "Error" / f"{i}.png").write_bytes(b"x")
    (note,) = watch_notes(tmp_path / "build1")
    assert "subfolders" in note and f"slmcnn monitor {tmp_path / 'build1' / 'layers'}" in note
    assert watch_notes(tmp_path / "build1" / "layers") == []


def test_photos_are_taken_by_the_number_in_the_name_then_time_folder_by_folder(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    for folder, names in ((a, ("layer_10.png", "layer_9.png", "layer_100.png")), (b, ("x_2.png", "x_1.png"))):
        for name in names:
            (folder / name).write_bytes(b"x")
    stamps = [tmp_path / n for n in ("cam_20210916_104213.png", "cam_20210916_094213.png")]
    for path in stamps:
        path.write_bytes(b"x")
    given = sorted([*a.iterdir(), *b.iterdir()])  # alphabetical, as a folder listing gives them
    assert [p.name for p in in_layer_order(given)] == [
        "layer_9.png",
        "layer_10.png",
        "layer_100.png",
        "x_1.png",
        "x_2.png",
    ]
    assert in_layer_order(stamps) == stamps[::-1]  # a date-time stamp is no layer number: time order


def test_the_calibrate_advice_counts_the_flagged_layers():
    line = uncalibrated_advice(["critical", "ok", "critical", "minor", None])
    assert "2 critical" in line and "1 minor" in line and "of 5 layer(s)" in line
    assert "10-50" in line and "--camera" in line


def test_the_monitor_says_where_it_waits_and_what_it_stored(tiny_build, error_model_file, tmp_path):
    build = tmp_path / "build1"
    shutil.copytree(tiny_build / "layers", build / "layers", ignore=lambda _, names: names[3:])
    common = ("--db", tmp_path / "b.sqlite", "--model", error_model_file, "--exit-when-idle", "0.3", "--settle", "0")
    nested = run_cli("monitor", build, *common)
    assert nested.returncode == 0
    assert f"watching {build}, waiting for photos" in nested.stdout
    assert "subfolders" in nested.stderr and f"slmcnn monitor {build / 'layers'}" in nested.stderr
    assert nested.stdout.strip().splitlines()[-1] == f"{build}: stored 0 layer(s)"
    done = run_cli("monitor", build / "layers", *common)
    assert done.returncode == 0, done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"{build / 'layers'}: stored 3 layer(s): ")
    counted = summary.split(": ", 2)[2].split(", ")
    assert sum(int(part.split()[0]) for part in counted) == 3
    report = run_cli("report", "--db", tmp_path / "b.sqlite", "--out", tmp_path / "report.html")
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "report.html").read_text()
    assert (
        "<h2>Build build1" in page and "<h2>Build layers" not in page and page.count('<span class="grade g-') == 3
    )  # a grade on each thumbnail
    again = run_cli("monitor", build / "layers", *common)
    assert again.stdout.strip().splitlines()[-1] == f"{build / 'layers'}: stored 0 layer(s)"  # nothing twice


def test_synth_live_says_which_folder_to_watch(tmp_path):
    out = tmp_path / "demo"
    result = run_cli(
        "synth", "--out", out, "--layers", "2", "--size", "128", "--patch", "64", "--live", "--interval", "0"
    )
    assert result.returncode == 0, result.stderr
    assert f"slmcnn monitor {out / 'layers'}" in result.stdout
    assert sorted(os.listdir(out / "layers")) == ["00001.png", "00002.png"]


def test_predict_layer_shows_every_grade_and_advises_calibrating(tiny_build, error_model_file, tmp_path):
    layers = sorted((tiny_build / "layers").glob("*.png"))[:3]
    args = ("predict-layer", *layers, "--model", error_model_file, "--backend", "torch", "--map", "tiles")
    result = run_cli(*args, "--out", tmp_path / "out", "--html")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "powder" in line]
    assert len(lines) == 3 and all(any(g in line for g in ("  ok", "  minor", "  critical")) for line in lines)
    flagged = any("minor" in line or "critical" in line for line in lines)
    assert ("calibrate on 10-50 photos of good layers" in result.stdout) == flagged
    summary = (tmp_path / "out" / "summary.csv").read_text().splitlines()
    assert "grade" in summary[0].split(",") and len(summary) == 4
    page = (tmp_path / "out" / "index.html").read_text()
    headings = [page.index(f"<h3>layer {n} &middot; 0000{n}") for n in (1, 2, 3)]  # numbers as the machine counts
    assert headings == sorted(headings)


def test_the_report_chart_marks_critical_layers_red_on_whole_layer_numbers():
    from types import SimpleNamespace

    from matplotlib.colors import to_hex

    from slmcnn.monitoring.report import CRITICAL, curve_figure

    done = [SimpleNamespace(number=n, fractions={"Error": 0.01 * n, "Object": 0.2}) for n in range(3, 9)]
    alerts = [SimpleNamespace(layer=5, grade="critical"), SimpleNamespace(layer=6, grade="minor")]
    fig = curve_figure(done, alerts)
    fig.canvas.draw()
    ax = fig.axes[0]
    assert all(float(tick).is_integer() for tick in ax.get_xticks())
    legend = {
        text.get_text(): handle for text, handle in zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles)
    }
    assert to_hex(legend["critical layer"].get_color()) == to_hex(CRITICAL)
    assert [line.get_xdata()[0] for line in ax.lines[2:]] == [5]  # the critical layer only


def test_a_build_watched_in_a_layers_folder_is_named_after_its_parent():
    from slmcnn.monitoring.db.records import BuildRow
    from slmcnn.monitoring.report import build_title

    assert build_title(BuildRow(1, "/x/build1/layers", "layers", "", 0.0, "")) == "build1"
    assert build_title(BuildRow(2, "/x/build1/layers", "layers #2", "", 0.0, "")) == "build1 #2"
    assert build_title(BuildRow(3, "/x/camera", "camera", "", 0.0, "")) == "camera"
    assert build_title(BuildRow(4, "/x/build1/layers", "job 7", "", 0.0, "")) == "job 7"


def test_an_outline_that_fills_the_frame_suggests_full_frame():
    from slmcnn.camera import bed_doubts

    whole = bed_doubts((400, 400), [[2, 3], [397, 1], [396, 398], [3, 395]])
    assert any("--full-frame" in doubt for doubt in whole)
    part = bed_doubts((400, 400), [[100, 100], [300, 100], [300, 300], [100, 300]])
    assert not any("--full-frame" in doubt for doubt in part)


def test_the_same_frame_counts_once_and_few_frames_get_the_10_50_advice(tmp_path):
    from slmcnn.camera import distinct_frames, frames_advice

    for name, data in (("a.png", b"one"), ("b.png", b"two"), ("copy-of-a.png", b"one")):
        (tmp_path / name).write_bytes(data)
    a, b, copy = (str(tmp_path / n) for n in ("a.png", "b.png", "copy-of-a.png"))
    frames, note = distinct_frames([a, b, a, copy])
    assert frames == [a, b] and "2 frame(s) given more than once" in note
    assert distinct_frames([a, b]) == ([a, b], None)
    assert "10-50" in frames_advice(4) and frames_advice(10) is None


def test_calibrate_tells_repeats_few_frames_and_drops_a_stale_preview(tiny_build, tiny_model_file, tmp_path):
    layers = sorted((tiny_build / "layers").glob("*.png"))
    camera = tmp_path / "camera.json"
    first = run_cli("calibrate", layers[0], "--out", camera, "--corners", "10,10,370,12,372,374,8,370")
    assert first.returncode == 0 and (tmp_path / "camera.preview.png").is_file()
    frames = [*layers[:4], layers[0]]
    again = run_cli("calibrate", *frames, "--full-frame", "--model", tiny_model_file, "--out", camera, "--force")
    assert again.returncode == 0, again.stderr
    assert "1 frame(s) given more than once" in again.stderr and "a profile from 4 good layers: 10-50" in again.stderr
    assert "removed the earlier camera.preview.png" in again.stderr
    assert not (tmp_path / "camera.preview.png").exists()


def test_the_monitor_s_last_line_is_one_line_when_the_database_is_gone():
    from sqlalchemy.exc import OperationalError

    from slmcnn.errors import DatabaseError
    from slmcnn.monitoring.operator import Tally, closing_line

    class Gone:
        def __init__(self, error):
            self.error = error

        def folder_grades(self, *args):
            raise self.error

    before = Tally({}, 0)
    for error in (OperationalError("SELECT", {}, Exception("server closed the connection")), DatabaseError("locked")):
        line = closing_line(Gone(error), "/camera", "m1", before)
        assert line.startswith("no summary: the database cannot be read now") and "\n" not in line


def test_a_full_frame_camera_keeps_its_bed_size_so_places_are_in_mm(tmp_path):
    """calibrate --full-frame --bed-mm: camera.json keeps the size, a layer's regions and its alert
    text are in mm (and px); without --bed-mm they stay in px."""
    import json
    from pathlib import Path

    import pytest

    import slmcnn
    from slmcnn.profile import load_camera

    layers = Path(__file__).resolve().parents[1] / "examples" / "layers"
    good = [p for p in sorted(layers.glob("*.png")) if p.stem != "00025"]  # 00025: a streak
    camera, out = tmp_path / "camera.json", tmp_path / "out"
    made = run_cli("calibrate", *good, "--full-frame", "--bed-mm", "250,200", "--out", camera)
    assert made.returncode == 0 and "px" not in made.stderr, made.stderr
    assert json.loads(camera.read_text())["profile"]["bed_mm"] == [250, 200]
    done = run_cli("predict-layer", layers, "--camera", camera, "--out", out, "--backend", "torch", "--write", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads((out / "00025.json").read_text())
    box, box_mm = doc["regions"][0]["box"], doc["regions"][0]["box_mm"]  # the photos are 768 x 768 px
    assert box_mm == pytest.approx([v * mm / 768 for v, mm in zip(box, (250, 200, 250, 200))], abs=0.01)
    assert " mm at (" in doc["grade"]["message"] and " mm at (" in done.stdout
    profile = load_camera(camera)[1]
    del profile.meta["bed_mm"]  # a full-frame camera calibrated without --bed-mm
    last = slmcnn.predict_layers(sorted(layers.glob("*.png")), camera=profile, backend="torch")[-1]
    assert last.fine.regions and all(r.box_mm is None for r in last.fine.regions)
    assert " px at (" in last.grade.message() and " mm " not in last.grade.message()
