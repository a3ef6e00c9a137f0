"""Fine maps: Error placed at pixel level by the build's own memory, regions named by type, the
output contract (classes.png per pixel, JSON map and regions, summary.csv grade)."""

import copy
import csv
import json
import threading
from concurrent.futures import Future

import cv2
import numpy as np

from slmcnn.constants import ERROR
from slmcnn.defect_types import DEFECT_TYPES
from slmcnn.pipeline import LayerPipeline, RunOptions
from slmcnn.regions import MIN_AREA
from tests.conftest import run_cli


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


def test_the_texture_made_ahead_on_the_decoding_pool_gives_the_same_maps(shipped_model):
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
        threads = [
            name.startswith("slmcnn-decode") if ahead else name == threading.main_thread().name for name in where
        ]
        assert len(where) == len(layers) and all(threads)
        assert all(o.result.seen is None for o in outcomes)  # 7 MB a layer: not kept with the results
        maps.append([o.result.class_map for o in outcomes])
    assert (maps[0][-1] == ERROR).any()
    for made_ahead, made_inline in zip(*maps, strict=True):
        np.testing.assert_array_equal(made_ahead, made_inline)


def test_the_search_made_ahead_is_used_only_with_the_builds_memory(shipped_model):
    """The network thread searches the next layer's texture in the build's memory (FineMapper.see):
    the mapping uses that search, the same maps as its own, and makes it again when the memory
    it was made with is no longer the build's (another build's first layer learns its texture)."""
    rng = np.random.default_rng(2)
    layers = [(f"b/{i:03d}.png", _bed(rng)) for i in range(5)]
    cv2.circle(layers[-1][1], (200, 150), 5, (40, 40, 40), -1)
    pipeline = LayerPipeline(_TorchLike(shipped_model), RunOptions(workers=1, learn=3), model=shipped_model)
    pipeline.predictor.prepare = None
    list(pipeline.run(layers[:3]))
    mapper = pipeline.mapper
    mapper._take_memory()
    memory, searches = mapper.texture, []
    search = memory.search
    memory.search = lambda features: searches.append(1) or search(features)
    maps = []
    for stale in (False, True):
        result = next(pipeline.predictor.predict([layers[4]]))
        result.seen = mapper.see(result.image)
        assert result.seen.memory is memory and len(searches) == 1 + stale
        assert result.seen.features is None  # searched: only the search's points wait with the layer
        if stale:  # the build's memory changed since (another object, the same content)
            mapper.texture = copy.copy(memory)
        change = copy.deepcopy(mapper.change)
        maps.append(mapper(result).classes)
        mapper.change = change  # the second mapping sees the change memory the first did
        assert len(searches) == 1 + 2 * stale  # made ahead: used; stale: searched again
    assert (maps[0] == ERROR).any()
    np.testing.assert_array_equal(maps[0], maps[1])
    result.seen = mapper.see(result.image)  # searched in this build's memory, its features dropped
    mapper.new_build()
    assert mapper(result).state == "learning"  # the next build's first layer: its texture made again
    assert mapper.first[0][0].shape[:2] == result.seen.searched[1].shape


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


def test_the_fine_maps_start_again_with_each_build(shipped_model):
    rng = np.random.default_rng(1)
    pipeline = LayerPipeline(_TorchLike(shipped_model), RunOptions(workers=1, learn=3), model=shipped_model)
    first = [(f"one/{i}.png", _bed(rng)) for i in range(4)] + [(f"two/{i}.png", _bed(rng)) for i in range(4)]
    states = [o.result.fine.state for o in pipeline.run(first)]
    assert states == ["learning"] * 3 + ["judged"] + ["learning"] * 3 + ["judged"]


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


def test_the_seed_streak_photo_stays_critical_with_a_camera_profile(tmp_path):
    """examples/layers/00025.png (a full-height streak, banding) with a profile made from the 5
    other photos: the network's sure Error is not repainted sound, fine maps or tiles."""
    from pathlib import Path

    layers = Path(__file__).resolve().parents[2] / "examples" / "layers"
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
