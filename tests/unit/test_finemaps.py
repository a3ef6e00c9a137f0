"""Fine maps: Error placed at pixel level by the build's own memory, regions named by type, the
output contract (classes.png per pixel, JSON map and regions, summary.csv grade)."""

import numpy as np
import pytest

from slmcnn.change import layer_median
from slmcnn.defect_types import DEFECT_TYPES
from slmcnn.errors import SettingsError
from slmcnn.finemaps import FineMapper
from slmcnn.pipeline import RunOptions
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


@pytest.mark.parametrize("layers", [1, 2, 3, 9, 10])
def test_the_change_memory_median_is_numpys(layers):
    stack = np.random.default_rng(layers).random((layers, 30, 20), dtype=np.float32)
    stack[:, 0, 0] = 0.5  # ties
    np.testing.assert_array_equal(layer_median(stack), np.median(stack, 0))


def test_bad_fine_map_settings_are_one_clear_error():
    with pytest.raises(SettingsError, match="maps"):
        RunOptions(maps="pixels")
    with pytest.raises(SettingsError, match="photo"):
        RunOptions(photo="later")
    with pytest.raises(SettingsError, match="learn"):
        RunOptions(learn=1)
    with pytest.raises(SettingsError, match="3 first layers"):
        FineMapper(object(), learn=2)


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
