import hashlib
import json
import os

import numpy as np
import pytest

from conftest import run_cli
from slmcnn.errors import SettingsError
from slmcnn.images import read
from slmcnn.labels import ERROR, OBJECT, LabelRule
from slmcnn.synth import SynthSettings, generate_build
from slmcnn.synth.build import plan_build, render_layer
from slmcnn.synth.defects import DEFECT_KINDS


def digest(folder):
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_gives_identical_files(tmp_path):
    settings = dict(layers=3, seed=9, size=256)
    generate_build(SynthSettings(**settings), tmp_path / "a", workers=2)
    generate_build(SynthSettings(**settings), tmp_path / "b", workers=1)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    generate_build(SynthSettings(**{**settings, "seed": 10}), tmp_path / "c", workers=1)
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


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


def test_label_rule():
    rule = LabelRule(error_min_pixels=10, object_min_fraction=0.05, object_ambiguous_fraction=0.01)
    tiles = np.zeros((4, 20, 20), np.uint8)
    tiles[1, :2, :5] = 2  # 10 error pixels -> Error
    tiles[2, :5, :] = 1  # 25% object -> Object
    tiles[3, 0, :3] = 2  # 3 error pixels -> Powder by the hard rule, but ambiguous
    assert rule.labels(tiles).tolist() == [0, 2, 1, 0]
    assert rule.ambiguous(tiles).tolist() == [False, False, False, True]


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_each_defect_type_appears_when_enabled(kind):
    settings = SynthSettings(layers=6, seed=2, size=256, defect_rates={kind: 0.6}, parts=(3, 5))
    plan = plan_build(settings)
    found = []
    for layer in range(1, 7):
        rendered = render_layer(plan, layer)
        found += [d["type"] for d in rendered.defects]
        for d in rendered.defects:
            assert d["pixels"] > 0
    assert set(found) == {kind}
    other = SynthSettings(layers=6, seed=2, size=256, defect_rates={}, parts=(3, 5))
    assert all(not render_layer(plan_build(other), layer).defects for layer in range(1, 7))


def test_direction_turns_image_and_mask_together():
    base = dict(layers=1, seed=4, size=256, defect_rates={"streak": 1.0}, perspective=0.0)
    down = render_layer(plan_build(SynthSettings(**base, direction="down")), 1)
    left = render_layer(plan_build(SynthSettings(**base, direction="left")), 1)
    assert (np.rot90(down.mask, 1) == left.mask).all()
    assert (np.rot90(down.image, 1) == left.image).all()


def test_impossible_settings_and_occupied_folders(tmp_path):
    with pytest.raises(SettingsError, match="--patch"):
        generate_build(SynthSettings(layers=1, size=64, patch=128), tmp_path / "x")
    with pytest.raises(SettingsError, match="--layers"):
        generate_build(SynthSettings(layers=-1), tmp_path / "x")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    with pytest.raises(SettingsError, match="not an slmcnn build"):
        generate_build(SynthSettings(layers=1, size=128), tmp_path / "mine", force=True)
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "precious"
    generate_build(SynthSettings(layers=1, size=128), tmp_path / "b")
    with pytest.raises(SettingsError, match="--force"):
        generate_build(SynthSettings(layers=1, size=128), tmp_path / "b")
    generate_build(SynthSettings(layers=1, size=128), tmp_path / "b", force=True)


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
