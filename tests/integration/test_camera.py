import json

import cv2
import numpy as np
import pytest

from slmcnn.errors import SettingsError
from slmcnn.profile import load_calibration
from tests.conftest import run_cli
from tests.unit.test_camera import TRUE_CORNERS, synthetic_frame


def test_calibrate_cli_and_bad_files(tmp_path, tiny_model_file):
    frame, _ = synthetic_frame()
    cv2.imwrite(str(tmp_path / "frame.png"), frame)
    out = tmp_path / "camera.json"
    result = run_cli("calibrate", tmp_path / "frame.png", "--out", out, "--bed-mm", "250")
    assert result.returncode == 0, result.stderr
    calibration = json.loads(out.read_text())
    assert np.abs(np.array(calibration["corners"]) - TRUE_CORNERS).max() < 4 and calibration["bed_mm"] == 250
    assert (tmp_path / "camera.preview.png").is_file()
    assert run_cli("calibrate", tmp_path / "frame.png", "--out", out).returncode == 2  # never overwrites unasked
    layer = run_cli(
        "predict-layer", tmp_path / "frame.png", "--camera", out, "--model", tiny_model_file, "--out", tmp_path / "o"
    )
    assert layer.returncode == 0, layer.stderr
    doc = json.loads((tmp_path / "o" / "frame.json").read_text())
    assert doc["width"] == 768 and doc["camera"]["corners"] == calibration["corners"]
    (tmp_path / "bad.json").write_text('{"corners": [[0, 0]]}')
    with pytest.raises(SettingsError, match="4 corners"):
        load_calibration(tmp_path / "bad.json")


def test_calibrate_refuses_a_bad_bed_size_in_one_line(tmp_path):
    frame, _ = synthetic_frame()
    cv2.imwrite(str(tmp_path / "frame.png"), frame)
    for bad in ("250mm", "0", "250,200,3"):
        done = run_cli("calibrate", tmp_path / "frame.png", "--out", tmp_path / "c.json", "--bed-mm", bad)
        assert done.returncode == 2 and "--bed-mm" in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    done = run_cli("calibrate", tmp_path / "frame.png", "--out", tmp_path / "c.json", "--bed-mm", "250,200")
    assert done.returncode == 0 and json.loads((tmp_path / "c.json").read_text())["bed_mm"] == [250, 200]
