"""benchmarks/bench_real.py on generated photos laid out as the PBLM data set, and on a synth build."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slmcnn.images import read
from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_real")


def _frame(layer: np.ndarray, seed: int) -> np.ndarray:
    """A camera frame: the bed (a synthetic layer) inside a dark chamber, as a gray JPEG would hold."""
    rng = np.random.default_rng(seed)
    frame = rng.normal(25, 4, (512, 512)).clip(0, 255).astype(np.uint8)
    frame[64:448, 64:448] = layer[..., 0]
    return frame


@pytest.fixture(scope="module")
def pblm(tiny_build, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pblm")
    layers = sorted((tiny_build / "layers").glob("*.png"))
    for folder, picks in (("No_Defect", layers[:3]), ("Powder_Uneven", layers[3:6]), ("Deformation", layers[6:8])):
        (root / folder).mkdir()
        for i, path in enumerate(picks):
            Image.fromarray(_frame(read(path), i)).save(root / folder / f"{i:04d}.jpg", quality=90)
    return root


def test_pblm_figures_are_computed_per_folder(bench, pblm, tiny_model_file, tmp_path, capsys):
    out = tmp_path / "real.json"
    assert bench.main(["--model", str(tiny_model_file), "--pblm", str(pblm), "--json", str(out)]) == 0
    result = json.loads(out.read_text())["pblm"]
    assert result["photos"] == 8
    assert set(result["folders"]) == {"No_Defect", "Powder_Uneven", "Deformation"}
    assert 0.0 <= result["auroc"] <= 1.0
    for row in result["folders"].values():
        assert 0.0 <= row["flagged"] <= 1.0
        assert 0.0 <= row["error_tiles_per_photo"] <= result["tiles_per_photo"]
    assert result["good_flagged"] == result["folders"]["No_Defect"]["flagged"]
    (corners,) = result["calibrations"].values()  # one photo size, one bed outline
    assert np.allclose(corners, [[64, 64], [448, 64], [448, 448], [64, 448]], atol=6)
    assert "per-photo AUROC" in capsys.readouterr().out


def test_limit_spreads_photos_over_each_folder(bench, pblm):
    photos = bench.pblm_photos(pblm, 2)
    assert [len(v) for v in photos.values()] == [2, 2, 2]
    assert photos["No_Defect"][-1].name == "0002.jpg"  # first and last, evenly spread


def test_build_with_masks_gives_precision_and_recall_per_class(bench, tiny_build, tiny_model_file, tmp_path):
    out = tmp_path / "real.json"
    args = ["--model", str(tiny_model_file), "--pblm", str(tmp_path / "absent"), "--build", str(tiny_build)]
    assert bench.main([*args, "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["builds"]
    assert row["layers"] == 10 and row["tiles"] == 90
    assert set(row["classes"]) == {"Powder", "Object", "Error"}
    assert sum(c["tiles"] for c in row["classes"].values()) == 90
    assert 0.0 <= row["macro_f1"] <= 1.0
    assert "all_builds" not in json.loads(out.read_text())


def test_several_builds_are_also_scored_together(bench, tiny_build, tiny_model_file, tmp_path):
    out = tmp_path / "real.json"
    args = ["--model", str(tiny_model_file), "--pblm", str(tmp_path / "absent"), "--build", str(tiny_build)]
    assert bench.main([*args, str(tiny_build), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    together, single = result["all_builds"], result["builds"][0]
    assert together["tiles"] == 180 and together["layers"] == 20
    assert together["accuracy"] == single["accuracy"]  # the same build twice: the same shares


def test_missing_pblm_is_skipped_with_a_message(bench, tiny_model_file, tmp_path, capsys):
    assert bench.main(["--model", str(tiny_model_file), "--pblm", str(tmp_path / "absent")]) == 0
    assert "PBLM skipped" in capsys.readouterr().out
