"""Fine maps: Error placed at pixel level by the build's own memory, regions named by type, the
output contract (classes.png per pixel, JSON map and regions, summary.csv grade)."""

import csv
import json
import threading
from concurrent.futures import Future

import cv2
import numpy as np
import pytest
from tests.conftest import run_cli

from slmcnn.constants import ERROR
from slmcnn.defect_types import DEFECT_TYPES
from slmcnn.errors import SettingsError
from slmcnn.finemaps import FineMapper, layer_median
from slmcnn.pipeline import LayerPipeline, RunOptions
from slmcnn.regions import MIN_AREA, find_regions, name_type

BED = 768 * 768


@pytest.mark.parametrize(
    ("box", "area", "contrast", "on_part", "recoated", "expected"),
    [
        ((6, 300), 1500, -0.2, False, False, "streak"),
        ((300, 6), 1500, -0.2, False, False, "hopping"),
        ((200, 180), 30000, -0.3, False, False, "other"),  # broad, but not at an end of the travel
        ((40, 40), 1200, -0.3, True, True, "super_elevation"),
        ((40, 40), 1200, 0.2, True, False, "other"),
        ((12, 14), 150, 0.4, False, False, "spatter"),
        ((30, 26), 600, -0.4, False, False, "hole"),
        ((120, 60), 5000, 0.3, False, False, "other"),
    ],
)
def test_a_region_is_named_from_its_shape_place_and_look(box, area, contrast, on_part, recoated, expected):
    assert name_type(*box, area, contrast, on_part, recoated, BED) == expected
    assert expected in DEFECT_TYPES


def test_a_short_feed_reaches_an_end_of_the_travel_and_shows_another_surface():
    assert name_type(200, 180, 30000, -0.3, False, False, BED, at_end=True) == "short_feed"
    assert name_type(200, 180, 30000, -0.3, False, False, BED, lines=5.0, at_end=True) == "short_feed"
    assert name_type(200, 180, 30000, -0.02, False, False, BED, lines=5.0, at_end=True) == "streak"  # powder's look
    assert name_type(200, 300, 30000, -0.3, False, False, BED, lines=0.1, at_end=True) == "hopping"


def test_a_region_of_whole_network_tiles_is_named_by_its_lines_and_place_only():
    assert name_type(128, 256, 32768, -0.01, False, False, BED, shaped=False) == "other"  # not a short feed
    assert name_type(128, 256, 32768, -0.01, False, False, BED, lines=4.0, shaped=False) == "streak"
    assert name_type(128, 128, 16384, -0.2, True, True, BED, shaped=False) == "super_elevation"
    assert name_type(12, 300, 3000, -0.2, False, False, BED) == "streak"
    assert name_type(128, 128, 16384, -0.2, False, False, BED) == "hole"
    assert name_type(128, 256, 32768, -0.2, False, False, BED) == "other"  # too long for a hole


def test_a_streak_runs_along_the_recoater_whichever_way_it_travels():
    assert name_type(300, 6, 1500, -0.2, False, False, BED, recoater="horizontal") == "streak"
    assert name_type(6, 300, 1500, -0.2, False, False, BED, recoater="horizontal") == "hopping"


def test_regions_have_boxes_mm_and_drop_specks():
    image = np.full((256, 256, 3), 180, np.uint8)
    error = np.zeros((256, 256), bool)
    error[20:220, 100:104] = True  # a thin line down the bed
    error[150:153, 10:13] = True  # a speck under MIN_AREA
    image[error] = 90
    regions, kept = find_regions(error, image, error.astype(np.float32) * 2, mm_per_pixel=0.5)
    assert [r.type for r in regions] == ["streak"] and regions[0].box == (100, 20, 104, 220)
    assert regions[0].box_mm == (50.0, 10.0, 52.0, 110.0) and regions[0].area == 800
    assert regions[0].contrast < 0 and regions[0].score == 2.0
    assert kept.sum() == 800 and not kept[150:153, 10:13].any() and 9 < MIN_AREA
    assert "streak 2 x 100 mm at (50, 10) mm, (100, 20) px" == regions[0].describe()


def _bed(rng, size=384):
    """A sound powder layer: even level, fine grain."""
    grain = cv2.GaussianBlur(rng.normal(0, 6, (size, size)).astype(np.float32), (0, 0), 0.8)
    return np.repeat(np.clip(170 + grain, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def test_a_small_spot_is_painted_where_it_is_not_as_a_tile(shipped_model):
    """After the build's first layers a 10 px dark spot is Error near it and nowhere much else:
    the fine map paints a few hundred pixels, a 128 px tile would paint 16,384."""
    rng = np.random.default_rng(0)
    pipeline = LayerPipeline(_TorchLike(shipped_model), RunOptions(workers=1, learn=4), model=shipped_model)
    layers = [(f"b/{i:03d}.png", _bed(rng)) for i in range(6)]
    spot = _bed(rng)
    cv2.circle(spot, (200, 150), 5, (40, 40, 40), -1)
    outcomes = list(pipeline.run([*layers, ("b/006.png", spot)]))
    states = [o.result.fine.state for o in outcomes]
    assert states == ["learning"] * 4 + ["judged"] * 3
    sound = outcomes[4].result
    assert (sound.class_map == ERROR).mean() < 0.01 and sound.grade.grade == "ok"
    result = outcomes[-1].result
    error = result.class_map == ERROR
    ys, xs = np.nonzero(error)
    assert len(ys) and np.hypot(ys - 150, xs - 200).max() < 40, "Error is where the spot is"
    assert error.sum() < 0.25 * 128 * 128
    assert result.fine.regions and result.grade.grade != "ok" and result.grade.defects


class _TorchLike:
    """The plain torch backend of a model (kept small: the shipped network's tiles)."""

    def __init__(self, model):
        from slmcnn.backends import create_backend

        self.inner = create_backend(model, "torch")
        self.model = self.inner.model

    def probabilities(self, patches):
        return self.inner.probabilities(patches)


def test_the_texture_made_ahead_in_the_network_thread_gives_the_same_maps(shipped_model):
    """The Predictor makes each layer's texture (FineMapper.see) while the caller maps the layer
    before: the maps are those made in the caller's thread, layer by layer."""
    rng = np.random.default_rng(0)
    layers = [(f"b/{i:03d}.png", _bed(rng)) for i in range(6)]
    cv2.circle(layers[-1][1], (200, 150), 5, (40, 40, 40), -1)
    maps = []
    for ahead in (True, False):
        pipeline = LayerPipeline(_TorchLike(shipped_model), RunOptions(workers=1, learn=4), model=shipped_model)
        assert pipeline.predictor.prepare == pipeline.mapper.see
        where, see = [], pipeline.mapper.see
        pipeline.mapper.see = lambda image, where=where, see=see: (
            where.append(threading.current_thread().name) or see(image)
        )
        pipeline.predictor.prepare = pipeline.mapper.see if ahead else None
        outcomes = list(pipeline.run(layers))
        assert where == [("slmcnn-network" if ahead else threading.main_thread().name)] * len(layers)
        assert all(o.result.seen is None for o in outcomes)  # 7 MB a layer: not kept with the results
        maps.append([o.result.class_map for o in outcomes])
    assert (maps[0][-1] == ERROR).any()
    for made_ahead, made_inline in zip(*maps, strict=True):
        np.testing.assert_array_equal(made_ahead, made_inline)


def test_the_memory_is_built_in_the_background_with_the_same_maps(shipped_model):
    """The layer that completes the build's first ones is answered before the texture memory is
    built (a monitor stores it at once); the maps are those of a memory built in line."""
    rng = np.random.default_rng(0)
    layers = [(f"b/{i:03d}.png", _bed(rng)) for i in range(6)]
    cv2.circle(layers[-1][1], (200, 150), 5, (40, 40, 40), -1)

    class InLine:
        def submit(self, build, *args):
            done = Future()
            done.set_result(build(*args))
            return done

    maps = []
    for background in (True, False):
        pipeline = LayerPipeline(_TorchLike(shipped_model), RunOptions(workers=1, learn=4), model=shipped_model)
        if not background:
            pipeline.mapper._builder = InLine()
        outcomes = list(pipeline.run(layers[:4]))
        assert pipeline.mapper.texture is None and pipeline.mapper._building is not None  # answered first
        outcomes += list(pipeline.run(layers[4:]))
        assert [o.result.fine.state for o in outcomes] == ["learning"] * 4 + ["judged"] * 2
        maps.append([o.result.class_map for o in outcomes])
    assert (maps[0][-1] == ERROR).any()
    for built_behind, built_in_line in zip(*maps, strict=True):
        np.testing.assert_array_equal(built_behind, built_in_line)


@pytest.mark.parametrize("layers", [1, 2, 3, 9, 10])
def test_the_change_memory_median_is_numpys(layers):
    stack = np.random.default_rng(layers).random((layers, 30, 20), dtype=np.float32)
    stack[:, 0, 0] = 0.5  # ties
    np.testing.assert_array_equal(layer_median(stack), np.median(stack, 0))


def test_the_fine_maps_start_again_with_each_build(shipped_model):
    rng = np.random.default_rng(1)
    pipeline = LayerPipeline(_TorchLike(shipped_model), RunOptions(workers=1, learn=3), model=shipped_model)
    first = [(f"one/{i}.png", _bed(rng)) for i in range(4)] + [(f"two/{i}.png", _bed(rng)) for i in range(4)]
    states = [o.result.fine.state for o in pipeline.run(first)]
    assert states == ["learning"] * 3 + ["judged"] + ["learning"] * 3 + ["judged"]


def test_bad_fine_map_settings_are_one_clear_error():
    with pytest.raises(SettingsError, match="maps"):
        RunOptions(maps="pixels")
    with pytest.raises(SettingsError, match="photo"):
        RunOptions(photo="later")
    with pytest.raises(SettingsError, match="learn"):
        RunOptions(learn=1)
    with pytest.raises(SettingsError, match="3 first layers"):
        FineMapper(object(), learn=2)


def test_predict_layer_writes_fine_maps_regions_and_the_grade(tiny_build, tmp_path):
    layers = sorted((tiny_build / "layers").glob("*.png"))[:6]
    done = run_cli("predict-layer", *layers, "--out", tmp_path / "out", "--backend", "torch", "--learn", "3")
    assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / "out" / "00006.json").read_text())
    assert (
        doc["map"]["width"] == 384
        and doc["map"]["state"] == "judged"
        and doc["grade"]["grade"] in ("ok", "minor", "critical")
    )
    for region in doc["regions"]:
        assert region["type"] in DEFECT_TYPES and len(region["box"]) == 4 and region["area"] >= MIN_AREA
    classes = cv2.imread(str(tmp_path / "out" / "00006.classes.png"), cv2.IMREAD_GRAYSCALE)
    assert classes.shape == (384, 384) and set(np.unique(classes)) <= {0, 1, 2}
    assert int((classes == 2).sum()) == round(doc["fractions"]["Error"] * classes.size)
    rows = list(csv.DictReader(open(tmp_path / "out" / "summary.csv")))
    assert [r["grade"] for r in rows] == [
        json.loads((tmp_path / "out" / f"{p.stem}.json").read_text())["grade"]["grade"] for p in layers
    ]
    tiles = run_cli("predict-layer", layers[0], "--out", tmp_path / "tiles", "--backend", "torch", "--map", "tiles")
    assert tiles.returncode == 0, tiles.stderr
    assert "map" not in json.loads((tmp_path / "tiles" / "00001.json").read_text())


@pytest.mark.parametrize(("axis", "expected"), [(1, "streak"), (0, "hopping")])
def test_a_broad_region_of_lines_is_named_by_their_direction(axis, expected):
    """Banding across the bed is hopping, many streaks side by side are a streak, not a short feed."""
    image = np.full((400, 400), 180, np.uint8)
    stripes = (np.arange(400) // 4) % 2 == 0
    if axis == 1:
        image[:, stripes] = 150
    else:
        image[stripes, :] = 150
    error = np.zeros((400, 400), bool)
    error[50:350, 50:350] = True
    regions, _ = find_regions(error, np.repeat(image[..., None], 3, axis=2), np.ones((400, 400), np.float32))
    assert [r.type for r in regions] == [expected]


def test_the_seed_streak_photo_stays_critical_with_a_camera_profile(tmp_path):
    """examples/layers/00025.png (a full-height streak, banding) with a profile made from the 5
    other photos: the network's sure Error is not repainted sound, fine maps or tiles."""
    from pathlib import Path

    layers = Path(__file__).resolve().parents[1] / "examples" / "layers"
    good = [p for p in sorted(layers.glob("*.png")) if p.stem != "00025"]
    camera = tmp_path / "camera.json"
    made = run_cli("calibrate", *good, "--full-frame", "--out", camera)
    assert made.returncode == 0, made.stderr
    for kind in ("fine", "tiles"):
        out = tmp_path / kind
        done = run_cli("predict-layer", layers, "--camera", camera, "--out", out, "--map", kind, "--backend", "torch")
        assert done.returncode == 0, done.stderr
        doc = json.loads((out / "00025.json").read_text())
        assert doc["grade"]["grade"] == "critical", (kind, doc["grade"])
        assert doc["fractions"]["Error"] > 0.3


def test_calibrate_stores_when_the_camera_takes_each_layer(tiny_build, tmp_path):
    """calibrate --photo goes into camera.json, predict-layer --camera follows it, an update keeps it."""
    from slmcnn.profile import camera_photo, load_camera

    frames = sorted((tiny_build / "layers").glob("*.png"))[:4]
    camera = tmp_path / "camera.json"
    made = run_cli("calibrate", *frames, "--full-frame", "--photo", "exposed", "--out", camera)
    assert made.returncode == 0, made.stderr
    assert camera_photo(camera) == "exposed" and load_camera(camera)[1] is not None
    done = run_cli("predict-layer", *frames, "--camera", camera, "--out", tmp_path / "out", "--learn", "3")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out" / "00004.json").read_text())["map"]["photo"] == "exposed"
    updated = run_cli("calibrate", frames[0], "--update", camera)
    assert updated.returncode == 0, updated.stderr
    assert camera_photo(camera) == "exposed"
    camera.write_text(camera.read_text().replace('"exposed"', '"sometimes"'))
    refused = run_cli("predict-layer", frames[0], "--camera", camera, "--out", tmp_path / "bad")
    assert refused.returncode != 0 and "photo" in refused.stderr and "Traceback" not in refused.stderr


def test_a_photo_of_another_size_in_a_build_is_mapped_not_a_crash(shipped_model):
    rng = np.random.default_rng(2)
    pipeline = LayerPipeline(_TorchLike(shipped_model), RunOptions(workers=1, learn=3), model=shipped_model)
    layers = [(f"b/{i}.png", _bed(rng)) for i in range(4)] + [("b/9.png", _bed(rng, 256)), ("b/10.png", _bed(rng))]
    outcomes = list(pipeline.run(layers))
    assert [o.error for o in outcomes] == [None] * 6
    assert outcomes[4].result.class_map.shape == (256, 256) and outcomes[4].result.fine.state == "judged"
