"""Big photos in strips: the same results as the whole photo at once; only the files asked for."""

import zlib

import numpy as np
import pytest
from PIL import Image

from slmcnn import tiles
from slmcnn.pngstrips import adler32_combine, write_png_strips


@pytest.mark.parametrize("stride", [128, 64, 100])
def test_strips_of_tiles_are_the_tiles(stride):
    image = np.random.default_rng(0).integers(0, 255, (600, 500, 3), dtype=np.uint8)
    where = tiles.geometry(600, 500, 128, stride)
    parts = list(tiles.strips(image, where, max_tiles=7))
    assert len(parts) > 1 and all(len(p) <= max(7, len(where.xs)) for p in parts)
    np.testing.assert_array_equal(np.concatenate(parts), tiles.cut(image, where))


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
