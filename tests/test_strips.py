"""Big photos in strips: the same results as the whole photo at once; only the files asked for."""

import zlib

import numpy as np
import pytest
from PIL import Image

from slmcnn import outputs, render, tiles
from slmcnn.backends import TorchBackend
from slmcnn.pipeline import LayerOutcome
from slmcnn.pngstrips import adler32_combine, write_png_strips
from slmcnn.predict import Predictor


@pytest.mark.parametrize("stride", [128, 64, 100])
def test_strips_of_tiles_are_the_tiles(stride):
    image = np.random.default_rng(0).integers(0, 255, (600, 500, 3), dtype=np.uint8)
    where = tiles.geometry(600, 500, 128, stride)
    parts = list(tiles.strips(image, where, max_tiles=7))
    assert len(parts) > 1 and all(len(p) <= max(7, len(where.xs)) for p in parts)
    np.testing.assert_array_equal(np.concatenate(parts), tiles.cut(image, where))


@pytest.mark.parametrize("stride", [None, 64])
def test_a_photo_classified_in_strips_is_the_photo_classified_whole(tiny_model_file, tiny_build, stride):
    import slmcnn

    model = slmcnn.load_model(tiny_model_file)
    layers = sorted((tiny_build / "layers").glob("*.png"))[:3]
    whole = list(Predictor(TorchBackend(model, "fp32"), 128, stride, batch_tiles=1000).predict(layers))
    strips = list(Predictor(TorchBackend(model, "fp32"), 128, stride, batch_tiles=4).predict(layers))
    for a, b in zip(whole, strips):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
        np.testing.assert_array_equal(a.class_map, b.class_map)


@pytest.mark.parametrize("stride", [64, 100, 128])
def test_stitched_classes_of_runs_of_rows_and_columns_are_the_per_pixel_mean(stride):
    where = tiles.geometry(700, 300, 128, stride)  # overlapping, and a last tile flush with each edge
    probabilities = np.random.default_rng(1).random((where.count, 3)).astype(np.float32)
    expected = tiles.stitch(where, probabilities).argmax(2)
    np.testing.assert_array_equal(tiles.stitch_classes(where, probabilities), expected)


@pytest.mark.parametrize("shape", [(1, 1), (37, 5), (300, 257, 3), (513, 64, 3)])
def test_png_strips_read_back_exactly(tmp_path, shape):
    image = np.random.default_rng(2).integers(0, 255, shape, dtype=np.uint8)
    image[: shape[0] // 2] = 7  # flat and noisy parts
    channels = 3 if len(shape) == 3 else 1
    path = write_png_strips(
        tmp_path / "a.png", shape[0], shape[1], channels, lambda y0, y1: image[y0:y1], strip_rows=16
    )
    np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temporary file left


def test_adler32_of_joined_strips():
    a, b = b"powder bed" * 999, b"layer" * 12345
    assert adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)


def test_files_not_asked_for_are_not_made(tmp_path, tiny_model_file, tiny_build, monkeypatch):
    import slmcnn

    model = slmcnn.load_model(tiny_model_file)
    (result,) = Predictor(TorchBackend(model), 128).predict(sorted((tiny_build / "layers").glob("*.png"))[:1])

    def no_overlay(*args, **kwargs):
        raise AssertionError("an overlay was drawn")

    monkeypatch.setattr(render, "overlay", no_overlay)
    with outputs.RunFiles(tmp_path / "out", ("json",), summary=False) as files:
        written = files.add(LayerOutcome(result.path, result))
    assert set(written) == {"json"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{result.path.stem}.json"]


def test_predict_layer_writes_only_the_files_asked_for(tmp_path, tiny_model_file, tiny_build):
    from conftest import run_cli

    layer = tiny_build / "layers" / "00001.png"
    args = ("predict-layer", layer, "--out", tmp_path / "out", "--model", tiny_model_file, "--backend", "torch")
    assert run_cli(*args, "--write", "json").returncode == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00001.json", "summary.csv"]
    refused = run_cli(*args, "--write", "json,thumbnail", "--force")
    assert refused.returncode != 0 and "thumbnail" in refused.stderr
