import numpy as np
import pytest

from slmcnn.errors import SettingsError
from slmcnn.tiles import stitch, stitch_maps, tile, tile_starts


def test_starts_cover_odd_sizes_without_cropping():
    assert tile_starts(768, 128, 128).tolist() == [0, 128, 256, 384, 512, 640]
    assert tile_starts(300, 128, 128).tolist() == [0, 128, 172]
    assert tile_starts(300, 128, 64).tolist() == [0, 64, 128, 172]
    assert tile_starts(128, 128, 64).tolist() == [0]
    with pytest.raises(SettingsError, match="smaller than one patch"):
        tile_starts(100, 128, 128)


def test_tiles_are_the_right_pixels():
    image = np.random.default_rng(0).integers(0, 255, (300, 257, 3), dtype=np.uint8)
    grid = tile(image, 128, 64)
    rows, cols = grid.shape
    assert (rows, cols) == (4, 4)
    for index in (0, 5, rows * cols - 1):
        r, c = divmod(index, cols)
        y, x = grid.ys[r], grid.xs[c]
        assert (grid.patches[index] == image[y : y + 128, x : x + 128]).all()


def test_stitch_without_overlap_paints_each_tile():
    grid = tile(np.zeros((256, 384, 3), np.uint8), 128)
    values = np.eye(3)[[0, 1, 2, 2, 1, 0]]
    classes = stitch(grid, values).argmax(2)
    assert classes[0, 0] == 0 and classes[0, 200] == 1 and classes[0, 300] == 2
    assert classes[200, 0] == 2 and classes[200, 383] == 0


def test_stitch_with_overlap_averages_covering_tiles():
    grid = tile(np.zeros((128, 256, 3), np.uint8), 128, 64)  # tiles at x = 0, 64, 128
    values = np.array([[1.0], [0.0], [3.0]])
    out = stitch(grid, values)[0, :, 0]
    assert out[10] == pytest.approx(1.0)  # only tile 0
    assert out[100] == pytest.approx(0.5)  # tiles 0 and 1
    assert out[150] == pytest.approx(1.5)  # tiles 1 and 2
    assert out[250] == pytest.approx(3.0)  # only tile 2


def test_stitch_maps_matches_stitch_for_constant_maps():
    grid = tile(np.zeros((300, 257, 3), np.uint8), 128, 64)
    values = np.random.default_rng(1).random(len(grid.patches))
    maps = np.repeat(np.repeat(values[:, None, None], 128, 1), 128, 2)
    np.testing.assert_allclose(stitch_maps(grid, maps), stitch(grid, values[:, None])[..., 0], atol=1e-5)


@pytest.mark.parametrize("shape,stride", [((256, 384), 128), ((300, 257), 128), ((300, 257), 64)])
def test_stitch_classes_matches_mean_probabilities(shape, stride):
    from slmcnn.tiles import stitch_classes

    grid = tile(np.zeros((*shape, 3), np.uint8), 128, stride)
    probs = np.random.default_rng(2).dirichlet(np.ones(3), len(grid.patches)).astype(np.float32)
    np.testing.assert_array_equal(stitch_classes(grid, probs), stitch(grid, probs).argmax(2))
