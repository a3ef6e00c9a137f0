"""What an operator is told around each command: where the monitor looks and what it stored, what
synth --live writes, the order photos are taken in, and when to calibrate first."""

import os
import shutil

from tests.conftest import run_cli


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


def test_a_full_frame_camera_keeps_its_bed_size_so_places_are_in_mm(tmp_path):
    """calibrate --full-frame --bed-mm: camera.json keeps the size, a layer's regions and its alert
    text are in mm (and px); without --bed-mm they stay in px."""
    import json
    from pathlib import Path

    import pytest

    import slmcnn
    from slmcnn.profile import load_camera

    layers = Path(__file__).resolve().parents[2] / "examples" / "layers"
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
