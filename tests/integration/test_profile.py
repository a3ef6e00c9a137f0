"""The camera profile on generated frames: learned from good layers, no labels."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from slmcnn import images
from slmcnn.backends.profile import ProfileBackend
from slmcnn.camera import CameraCalibration
from slmcnn.errors import SlmcnnError
from slmcnn.model import create_model
from slmcnn.profile import (
    ERROR,
    OBJECT,
    POWDER,
    ProfileError,
    arrays_path,
    build_profile,
    decide,
    load_calibration,
    load_camera,
    save_camera,
    update_camera,
    update_profile,
)
from slmcnn.profile.decision import SURE
from slmcnn.synth.build import SynthSettings, plan_build, render_layer
from slmcnn.tiles import tile
from tests.unit.test_profile import network_says

SIZE = 384  # 3x3 tiles of 128 px
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "layers"
STREAK = EXAMPLES / "00025.png"  # a full-height streak with bright banding; the other 5 photos profile it


@pytest.fixture(scope="module")
def model(shipped_model):
    return shipped_model


@pytest.fixture(scope="module")
def good_frames() -> list[np.ndarray]:
    plan = plan_build(SynthSettings(size=SIZE, seed=3, layers=14, parts=(0, 0), defect_rates={}, perspective=0))
    return [render_layer(plan, i).image for i in range(14)]


@pytest.fixture(scope="module")
def profile(good_frames, model):
    return build_profile(good_frames[:8], None, model)


def with_blob(frame: np.ndarray, y: int, x: int, value: int, radius: int = 18) -> np.ndarray:
    out = frame.copy()
    yy, xx = np.mgrid[: out.shape[0], : out.shape[1]]
    out[(yy - y) ** 2 + (xx - x) ** 2 < radius**2] = value
    return out


def test_profile_from_good_frames(profile, good_frames, model):
    assert profile.frames == 8 and profile.positions == 9
    assert profile.thresholds.shape == (9,) and (profile.thresholds > 0).all()
    estimate = profile.meta["estimate"]
    assert estimate["left_out_layers"] == 8 and estimate["left_out_tiles_over"] == 0
    assert 0 < estimate["false_error_tiles_per_100_layers"] <= 1.0 + 1e-6
    assert "8 good frames" in profile.summary()
    # the good frames' own tiles are in the memory: far below every threshold
    assert profile.score_frame(good_frames[0], model).score < 0.5


def test_a_defect_raises_its_tile(profile, good_frames, model):
    frame = good_frames[10]
    sound = profile.score_frame(frame, model)
    defect = profile.score_frame(with_blob(frame, 64 + 128, 64 + 256, 30), model)  # tile row 1, col 2
    assert defect.anomaly[5] > 1.0 and defect.anomaly[5] > 2 * sound.anomaly[5]
    assert defect.score > sound.score
    scores = profile.score(tile(with_blob(frame, 192, 320, 30), 128).patches, model, network_says([POWDER] * 9))
    assert scores.classes[5] == ERROR and scores.probabilities[5].argmax() == ERROR
    assert (np.delete(scores.classes, 5) == POWDER).all()


def test_a_part_the_good_layers_never_showed_is_not_an_error(profile, good_frames, model):
    frame = with_blob(good_frames[11], 192, 192, 20, radius=50)  # a part in tile 4
    told = [POWDER, ERROR, POWDER, POWDER, OBJECT] + [POWDER] * 4  # tile 4 Object, tile 1 Error
    scores = profile.score(tile(frame, 128).patches, model, network_says(told), confirm=1.0)
    assert scores.anomaly[4] > 1.0  # unlike the good layers...
    assert scores.classes[4] == OBJECT  # ...but the network calls it Object, so it stays Object
    assert scores.classes[1] == POWDER  # the network's Error on sound powder is not confirmed
    assert scores.network[4] == OBJECT and scores.network[1] == ERROR


def test_a_grainier_layer_is_not_an_error_but_a_hole_on_it_is(profile, good_frames, model):
    # the same bed with more sensor noise (a gain change): every tile is farther from the good ones
    noisy = good_frames[10].astype(np.float32) + np.random.default_rng(1).normal(0, 4, (SIZE, SIZE))[..., None]
    noisy = np.clip(noisy, 0, 255).astype(np.uint8)
    powder = network_says([POWDER] * 9)
    scores = profile.score(tile(noisy, 128).patches, model, powder)
    assert (scores.anomaly > 1.0).sum() >= 5 and np.median(scores.anomaly) > 1.5 * profile.typical
    assert (decide(powder, scores.anomaly) == ERROR).sum() >= 5  # without the layer's level
    assert (scores.classes == POWDER).all()
    holed = profile.score(tile(with_blob(noisy, 192, 320, 0), 128).patches, model, powder)
    assert holed.classes[5] == ERROR and (np.delete(holed.classes, 5) == POWDER).all()


def test_the_profile_s_seen_is_per_place(profile):
    ratio = profile.left_out / profile.thresholds[None, :]
    assert profile.seen.shape == (profile.positions,)
    np.testing.assert_allclose(profile.seen, 1.5 * ratio.max(0), rtol=1e-6)
    assert (profile.seen >= ratio.max(0)).all() and (profile.seen < 1.5 + 1e-6).all()


@pytest.fixture(scope="module")
def streak_photo(model):
    """examples/layers: the profile from the 5 photos around the streak, and the streak's tiles."""
    good = sorted(p for p in EXAMPLES.glob("*.png") if p != STREAK)
    if len(good) != 5 or not STREAK.is_file():
        pytest.skip("examples/layers is not in this checkout")
    camera = build_profile(good, None, model)
    probs, features = camera.feature_net(model)(tile(images.read(STREAK), camera.patch).patches)
    return camera, probs, features


def test_a_full_height_streak_keeps_the_errors_the_network_is_sure_of(streak_photo):
    """Issue 43: the network calls 22 of 36 tiles Error with P >= 0.9; the profile vetoed 8 of them
    (anomaly under `confirm`, 0.5) and kept 14 tiles Error."""
    camera, probs, features = streak_photo
    sure = probs[:, ERROR] >= SURE
    assert sure.sum() >= 18
    scores = camera.score_features(probs, features)
    kept = sure & (scores.classes == ERROR)
    assert kept.sum() >= sure.sum() - 2 and (scores.classes == ERROR).mean() >= 0.5
    vetoed = sure & ~kept  # only where the good photos looked the same at that place
    assert (scores.anomaly[vetoed] <= camera.seen[vetoed]).all()
    assert np.median(scores.anomaly[kept]) < camera.meta["confirm"]  # the anomaly alone would not keep them


def test_save_load_round_trip(tmp_path, profile, good_frames, model):
    path = save_camera(tmp_path / "camera.json", None, profile)
    doc = json.loads(path.read_text())
    assert doc["full_frame"] and doc["profile"]["frames"] == 8
    assert doc["profile"]["threshold"] == profile.meta["threshold"]
    assert "false_error_tiles_per_100_layers" in doc["profile"]["estimate"]
    calibration, loaded = load_camera(path)
    assert calibration is None
    for name in ("memory", "memory_frame", "thresholds", "left_out", "mean", "scale"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(profile, name))
    a, b = profile.score_frame(good_frames[12], model), loaded.score_frame(good_frames[12], model)
    np.testing.assert_allclose(a.anomaly, b.anomaly, rtol=1e-5)


def test_calibrated_profile_keeps_its_geometry(tmp_path, good_frames, model):
    raw = [np.pad(f, ((40, 40), (60, 60), (0, 0))) for f in good_frames[:5]]
    corners = [[60, 40], [60 + SIZE, 40], [60 + SIZE, 40 + SIZE], [60, 40 + SIZE]]
    calibration = CameraCalibration(corners, size=SIZE)
    built = build_profile(raw, calibration, model)
    assert built.frame_shape == raw[0].shape[:2] and built.grid_shape == (3, 3)
    path = save_camera(tmp_path / "camera.json", calibration, built)
    loaded_calibration, loaded = load_camera(path)
    assert loaded_calibration.corners == calibration.corners and loaded.calibration is not None
    assert CameraCalibration(**{k: v for k, v in json.loads(path.read_text()).items() if k not in ("profile", "photo")})
    with pytest.raises(ProfileError, match="frame is"):
        loaded.score_frame(good_frames[0], model)


def test_update_adds_frames(profile, good_frames, model):
    updated = update_profile(profile, good_frames[8:12], model)
    assert updated.frames == 12 and profile.frames == 8
    assert set(np.unique(updated.memory_frame)) > set(np.unique(profile.memory_frame))
    np.testing.assert_array_equal(updated.left_out[:8], profile.left_out)
    assert updated.meta["estimate"]["left_out_layers"] == 12


def test_no_overwrite_without_force(tmp_path, profile):
    path = save_camera(tmp_path / "camera.json", None, profile)
    with pytest.raises(ProfileError, match="exists"):
        save_camera(path, None, profile)
    save_camera(path, None, profile, force=True)


def one_line(exc: pytest.ExceptionInfo) -> str:
    assert isinstance(exc.value, SlmcnnError) and exc.value.exit_code == 2
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_bad_frames_are_one_clear_error(good_frames, model):
    with pytest.raises(ProfileError, match="at least 4 good frames") as exc:
        build_profile(good_frames[:2], None, model)
    one_line(exc)
    mixed = good_frames[:4] + [good_frames[4][:256, :256]]
    with pytest.raises(ProfileError, match="256x256 px, the other frames 384x384") as exc:
        build_profile(mixed, None, model)
    one_line(exc)
    with pytest.raises(ProfileError, match="another camera") as exc:
        build_profile(good_frames[:6] + [np.full_like(good_frames[6], 128)], None, model)  # a covered lens
    one_line(exc)


def test_bad_profile_files_are_one_clear_error(tmp_path, profile, good_frames):
    path = save_camera(tmp_path / "camera.json", None, profile)
    target = arrays_path(path)
    original = target.read_bytes()

    target.write_bytes(original[: len(original) // 2])
    with pytest.raises(ProfileError, match="does not belong") as exc:
        load_camera(path)
    one_line(exc)

    target.unlink()
    with pytest.raises(ProfileError, match="missing") as exc:
        load_camera(path)
    one_line(exc)
    target.write_bytes(original)

    doc = json.loads(path.read_text())
    doc["profile"]["format_version"] = 99
    path.write_text(json.dumps(doc))
    with pytest.raises(ProfileError, match="format 99") as exc:
        load_camera(path)
    one_line(exc)

    path.write_text("{not json")
    with pytest.raises(ProfileError, match="not a camera file") as exc:
        load_camera(path)
    one_line(exc)
    with pytest.raises(ProfileError, match="no such camera file"):
        load_camera(tmp_path / "missing.json")


def test_profile_for_another_model_is_one_clear_error(profile, good_frames):
    torch.manual_seed(1)
    other = create_model("slmcnn-tiny").eval()
    with pytest.raises(ProfileError, match="another model") as exc:
        profile.score_frame(good_frames[0], other)
    one_line(exc)
    with pytest.raises(ProfileError, match="a layer of 4 tiles"):
        profile.score(tile(good_frames[0][:256, :256], 128).patches, other)


def test_profile_backend_runs_the_network_once_in_the_pipeline(profile, good_frames, model):
    from slmcnn.pipeline import LayerPipeline, run_layers

    backend = ProfileBackend(profile, model)
    frames = [good_frames[12], with_blob(good_frames[13], 192, 320, 30), good_frames[11]]
    pipeline = LayerPipeline(backend)
    pipeline.predictor.warm_up()  # a blank frame of the camera's size (the monitor does this)
    outcomes = list(pipeline.run(frames))
    for outcome, frame in zip(outcomes, frames, strict=True):
        expected = profile.score_frame(frame, model)
        np.testing.assert_allclose(outcome.result.anomaly, expected.anomaly, rtol=1e-3)
        assert (outcome.result.tile_classes.ravel() == expected.classes).all()
    assert outcomes[1].result.anomaly[5] > 1.0 and "anomaly" in outcomes[1].result.to_json()
    strips_predictor = LayerPipeline(ProfileBackend(profile, model))
    strips_predictor.predictor.batch_tiles = 4
    strips = list(strips_predictor.run(frames[1:2]))
    np.testing.assert_allclose(strips[0].result.anomaly, outcomes[1].result.anomaly, rtol=1e-3)
    with pytest.raises(ProfileError, match="a layer of 2x2 tiles"):
        list(run_layers([good_frames[0][:256, :256]], backend))


def with_scratch(frame: np.ndarray) -> np.ndarray:
    out = frame.copy()
    out[150:154, 20:120] = 40  # a dark scratch on the plate, in tile row 1, col 0
    return out


def test_fixed_marks_never_raise_an_error(good_frames, model):
    scratched = build_profile([with_scratch(f) for f in good_frames[:6]], None, model)
    plain = build_profile(good_frames[:6], None, model)
    frame = with_scratch(good_frames[12])
    assert plain.score_frame(frame, model).anomaly[3] > 1.0  # a scratch the good frames did not have
    assert scratched.score_frame(frame, model).anomaly[3] < 1.0  # one they all had


def test_update_camera_file_and_calibration_load(tmp_path, good_frames, model):
    raw = [np.pad(f, ((40, 40), (60, 60), (0, 0))) for f in good_frames[:6]]
    corners = [[60, 40], [60 + SIZE, 40], [60 + SIZE, 40 + SIZE], [60, 40 + SIZE]]
    calibration = CameraCalibration(corners, SIZE)
    path = save_camera(tmp_path / "camera.json", calibration, build_profile(raw[:4], calibration, model))
    assert load_calibration(path).corners == corners  # the geometry reads as before
    assert update_camera(path, raw[4:], model).frames == 6 and load_camera(path)[1].frames == 6
    full = save_camera(tmp_path / "full.json", None, build_profile(good_frames[:4], None, model))
    assert load_calibration(full) is None  # a full-frame camera straightens nothing
    with pytest.raises(ProfileError, match="no camera profile"):
        update_camera(save_camera(tmp_path / "plain.json", CameraCalibration(corners, SIZE), None), raw[4:], model)


def test_cli_calibrate_from_good_layers_and_predict(tmp_path, good_frames, write_image, model):
    from slmcnn.cli import main

    frames = [write_image(f"good/{i}.png", f) for i, f in enumerate(good_frames[:5])]
    camera = tmp_path / "camera.json"
    assert main(["calibrate", *map(str, frames[:4]), "--full-frame", "--out", str(camera)]) == 0
    assert json.loads(camera.read_text())["profile"]["frames"] == 4
    assert main(["calibrate", *map(str, frames[:4]), "--full-frame", "--out", str(camera)]) == 2  # no --force
    assert main(["calibrate", "--update", str(camera), str(frames[4])]) == 0
    assert json.loads(camera.read_text())["profile"]["frames"] == 5
    assert main(["calibrate", str(frames[0]), "--full-frame", "--out", str(tmp_path / "one.json")]) == 2
    layer = write_image("layer.png", with_blob(good_frames[12], 192, 320, 30))
    out = tmp_path / "out"
    args = ["predict-layer", str(layer), "--camera", str(camera), "--out", str(out), "--backend", "torch", "--html"]
    assert main(args) == 0
    doc = json.loads(next(out.glob("*.json")).read_text())
    assert np.array(doc["anomaly"]).shape == (3, 3) and doc["anomaly"][1][2] > 1.0
    page = (out / "index.html").read_text()
    assert 'alt="anomaly heat map layer"' in page and 'class="anomaly-legend"' in page
    assert "of 9 tiles above 1" in page and "0 of 9 tiles above 1" not in page
