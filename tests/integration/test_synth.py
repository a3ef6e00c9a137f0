import json
import os

from slmcnn.defect_types import SYNTH_TYPES, TYPE_LABELS
from slmcnn.images import read
from slmcnn.labels import ERROR, OBJECT, LabelRule
from slmcnn.synth.defects import DEFECT_KINDS
from tests.conftest import run_cli


def test_layout_and_build_json(tiny_build):
    info = json.loads((tiny_build / "build.json").read_text())
    assert info["seed"] == 5 and len(info["layers"]) == 10
    assert (tiny_build / "layers" / "00001.png").is_file() and (tiny_build / "masks" / "00010.png").is_file()
    image = read(tiny_build / "layers" / "00001.png")
    assert image.shape == (384, 384, 3) and (image[..., 0] == image[..., 2]).all()
    for layer in info["layers"]:
        for defect in layer["defects"]:
            x0, y0, x1, y1 = defect["bbox"]
            assert 0 <= x0 < x1 <= 384 and 0 <= y0 < y1 <= 384 and defect["type"] in DEFECT_KINDS
            assert defect["defect_type"] == SYNTH_TYPES[defect["type"]]
        assert layer["photo"] in ("recoated", "exposed") and (tiny_build / layer["types"]).is_file()
    assert info["type_labels"] == TYPE_LABELS
    header = (tiny_build / "patches" / "split.csv").read_text().splitlines()[0]
    assert header == "path,label,build,layer,row,col,split"


def test_patch_labels_agree_with_masks(tiny_build):
    rule = LabelRule()
    rows = (tiny_build / "patches" / "split.csv").read_text().splitlines()[1:]
    assert rows
    for row in rows:
        rel, label, _, layer, r, c, _ = row.split(",")
        mask = read(tiny_build / "masks" / f"{int(layer):05d}.png")[..., 0]
        cell = mask[int(r) * 128 : (int(r) + 1) * 128, int(c) * 128 : (int(c) + 1) * 128]
        errors = int((cell == ERROR).sum())
        if label == "Error":
            assert errors >= rule.error_min_pixels
        else:
            assert errors == 0  # ambiguous traces are left out, so no non-error patch holds error pixels
        if label == "Object":
            assert (cell == OBJECT).mean() >= rule.object_min_fraction
        patch = read(tiny_build / "patches" / rel)
        layer_image = read(tiny_build / "layers" / f"{int(layer):05d}.png")
        assert (patch == layer_image[int(r) * 128 : (int(r) + 1) * 128, int(c) * 128 : (int(c) + 1) * 128]).all()


def test_cli_live_writes_atomically_and_previews(tmp_path):
    out = tmp_path / "live"
    result = run_cli("synth", out, "--layers", "3", "--size", "256", "--live", "--interval", "0.05", "--preview")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out / "layers")) == ["00001.png", "00002.png", "00003.png"]
    assert (out / "preview.png").is_file()
    bad = run_cli("synth", tmp_path / "bad", "--layers", "2", "--patch", "1024", "--size", "256")
    assert bad.returncode == 2 and "error" in bad.stderr and "Traceback" not in bad.stderr
    unknown = run_cli("synth", tmp_path / "bad2", "--defects", "cracks=0.5", "--size", "256")
    assert unknown.returncode == 2 and "cracks" in unknown.stderr


def test_new_settings_reach_the_cli_through_config(tmp_path):
    config = tmp_path / "look.json"
    config.write_text(
        json.dumps({"after_exposure": [1, 1], "jpeg_share": 1, "jpeg_quality": [40, 60], "walls_share": 0})
    )
    out = tmp_path / "b"
    result = run_cli("synth", out, "--layers", "2", "--size", "256", "--config", config, "--no-patches")
    assert result.returncode == 0, result.stderr
    info = json.loads((out / "build.json").read_text())
    assert [layer["photo"] for layer in info["layers"]] == ["exposed", "exposed"]
    assert 40 <= info["camera"]["jpeg"] <= 60
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"jpeg_share": 2}))
    assert run_cli("synth", tmp_path / "c", "--size", "256", "--config", bad).returncode == 2
