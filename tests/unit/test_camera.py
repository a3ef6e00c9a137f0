import json

import cv2
import numpy as np
import pytest

from slmcnn.backends import TorchBackend
from slmcnn.camera import CameraCalibration, detect_corners, tile_ignored
from slmcnn.errors import SettingsError
from slmcnn.predict import Predictor
from slmcnn.synth import SynthSettings
from slmcnn.synth.build import plan_build, render_layer

TRUE_CORNERS = np.float32([[180, 90], [860, 120], [960, 830], [70, 800]])


def synthetic_frame(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic layer seen at an angle inside a dark, cluttered machine."""
    settings = SynthSettings(layers=1, seed=seed, size=512, perspective=0.0, walls_share=0.0)  # the bed alone
    layer = render_layer(plan_build(settings), 1).image
    rng = np.random.default_rng(seed)
    frame = rng.integers(10, 45, (900, 1040, 3), dtype=np.uint8)
    for _ in range(12):  # clutter: fixtures and cables in darker grays
        x, y = rng.integers(0, 1000, 2)
        cv2.rectangle(
            frame,
            (int(x), int(y)),
            (int(x + rng.integers(10, 80)), int(y + rng.integers(10, 80))),
            tuple(int(v) for v in rng.integers(30, 90, 3)),
            -1,
        )
    h = cv2.getPerspectiveTransform(np.float32([[0, 0], [512, 0], [512, 512], [0, 512]]), TRUE_CORNERS)
    warped = cv2.warpPerspective(layer, h, (1040, 900), flags=cv2.INTER_LINEAR)
    inside = cv2.warpPerspective(np.ones((512, 512), np.uint8), h, (1040, 900), flags=cv2.INTER_NEAREST).astype(bool)
    frame[inside] = warped[inside]
    return frame, layer


def test_warp_recovers_the_layer():
    frame, layer = synthetic_frame()
    bed = CameraCalibration(TRUE_CORNERS.tolist(), size=512).warp(frame)
    inner = (slice(8, -8), slice(8, -8))
    diff = np.abs(bed[inner].astype(float) - layer[inner].astype(float))
    assert diff.mean() < 4.0
    smooth = [cv2.GaussianBlur(a[inner][..., 0].astype(np.float32), (0, 0), 2) for a in (bed, layer)]
    assert np.abs(smooth[0] - smooth[1]).mean() < 2.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_corner_detection_within_a_few_pixels(seed):
    frame, _ = synthetic_frame(seed)
    found = detect_corners(frame)
    assert np.abs(found - TRUE_CORNERS).max() < 4.0, found


def test_ignored_tiles_never_count(tiny_model):
    frame, _ = synthetic_frame()
    camera = CameraCalibration(TRUE_CORNERS.tolist(), size=512, ignore=[[[170, 80], [560, 80], [560, 480], [170, 480]]])

    class AlwaysError:
        name = "error"

        def probabilities(self, patches):
            return np.tile([0.0, 0.0, 1.0], (len(patches), 1))

    result = next(iter(Predictor(AlwaysError(), 128, camera=camera).predict([("f", frame)])))
    assert result.ignored.sum() >= 4 and (result.tile_classes[result.ignored.reshape(result.grid.shape)] == -1).all()
    assert (result.tile_classes != 2).sum() == result.ignored.sum()
    assert result.fractions["Error"] == pytest.approx(1.0) and result.to_json()["ignored_tiles"] == result.ignored.sum()
    assert result.image.shape == (512, 512, 3)
    plain = next(iter(Predictor(TorchBackend(tiny_model), 128).predict([("f", frame)])))
    assert plain.image.shape == frame.shape and plain.ignored is None


def test_tile_ignored_counts_area():
    mask = np.zeros((256, 256), bool)
    mask[:128, :100] = True
    assert tile_ignored(mask, np.array([0, 128]), np.array([0, 128]), 128).tolist() == [True, False, False, False]


SQUARE = [[0, 0], [400, 0], [400, 400], [0, 400]]


class _Profile:
    """What a Camera asks of a camera profile: its geometry, its frames' shape and its stored settings."""

    def __init__(self, calibration=None, frame_shape=(300, 400), **meta):
        self.calibration, self.frame_shape, self.meta = calibration, frame_shape, meta


def test_a_camera_is_checked_once_where_it_is_built():
    from slmcnn.camera import Camera
    from slmcnn.errors import ProfileError

    assert Camera().adapt == 0 and not Camera().judged and Camera().mm_per_pixel is None
    assert Camera(profile=_Profile()).adapt == 5 and Camera(adapt=4).judged
    with pytest.raises(ProfileError, match="at least 4 without a camera profile"):
        Camera(adapt=2)
    with pytest.raises(SettingsError, match="adapt must be a whole number"):
        Camera(adapt=-1)
    with pytest.raises(SettingsError, match="error_threshold needs a camera profile"):
        Camera(error_threshold=1.5)
    with pytest.raises(SettingsError, match="error_threshold must be a finite number at least 0.05"):
        Camera(profile=_Profile(), error_threshold=0.0)
    with pytest.raises(SettingsError, match="photo must be one of auto, recoated, exposed"):
        Camera(photo="sometimes")
    with pytest.raises(ProfileError, match="another calibration"):
        Camera(CameraCalibration(SQUARE, 64), _Profile(CameraCalibration(SQUARE, 128)))
    for bad in (0, -3, [250, 200, 10], [250, "x"], float("nan"), True):
        with pytest.raises(SettingsError, match="bed_mm must be the bed's size in mm"):
            Camera(CameraCalibration(SQUARE, 64, bad))


def test_the_bed_s_size_gives_millimetres_per_pixel_with_a_bed_outline_or_full_frames():
    from slmcnn.camera import Camera, bed_size_text

    assert Camera(CameraCalibration(SQUARE, 500, 250)).mm_per_pixel == (0.5, 0.5)
    assert Camera(CameraCalibration(SQUARE, 500, [250, 200])).mm_per_pixel == (0.5, 0.4)
    assert Camera(CameraCalibration(SQUARE, 500)).mm_per_pixel is None
    full = Camera(profile=_Profile(frame_shape=(300, 400), bed_mm=[200, 150]))  # height, width
    assert full.geometry is None and full.bed_mm == [200, 150] and full.mm_per_pixel == (0.5, 0.5)
    assert Camera(profile=_Profile()).mm_per_pixel is None  # no size given: places stay in px
    with pytest.raises(SettingsError, match="full-frame camera needs its frames' size"):
        Camera(bed_mm=250)
    assert bed_size_text("250") == 250 and bed_size_text("250,200") == [250, 200]
    with pytest.raises(SettingsError, match="expected W or W,H"):
        bed_size_text("250mm")


def test_open_camera_reads_old_and_new_camera_files_and_takes_the_options_over_them(tmp_path):
    from slmcnn.errors import ProfileError
    from slmcnn.profile import open_camera

    old = tmp_path / "old.json"  # as slmcnn 0.1 wrote it: no photo, bed_mm one number
    old.write_text(json.dumps({"corners": SQUARE, "size": 500, "bed_mm": 250, "ignore": []}))
    camera = open_camera(old)
    assert camera.photo == "auto" and camera.mm_per_pixel == (0.5, 0.5) and camera.source == old
    assert camera.profile is None and camera.adapt == 0
    given = open_camera(old, adapt=4, error_threshold=1.25, photo="exposed")
    assert (given.adapt, given.error_threshold, given.photo, given.geometry) == (4, 1.25, "exposed", camera.geometry)
    assert open_camera(given) is given and open_camera(None).geometry is None
    with pytest.raises(ProfileError, match="at least 4"):
        open_camera(old, adapt=2)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"corners": SQUARE, "photo": "sometimes"}))
    with pytest.raises(ProfileError, match=r"bad.json: photo must be one of"):
        open_camera(bad)
    with pytest.raises(SettingsError, match="camera must be a camera.json, a Camera"):
        open_camera(42)
    full = tmp_path / "full.json"  # a full-frame camera keeps its bed size with its profile
    meta = {"format": "slmcnn-camera-profile", "format_version": 1, "frame_shape": [300, 400], "grid_shape": [2, 3]}
    full.write_text(
        json.dumps({"full_frame": True, "profile": meta | {"patch": 128, "model": {}, "bed_mm": [250, -1]}})
    )
    with pytest.raises(ProfileError, match="full.json: its profile's \"bed_mm\" must be the bed's size in mm"):
        open_camera(full)
