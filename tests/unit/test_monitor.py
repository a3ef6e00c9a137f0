import re

import numpy as np
import pytest

from slmcnn.monitoring import layer_number, layer_timestamp


def test_layer_numbers_from_names(tmp_path):
    assert layer_number(tmp_path / "00017.png", None) == 17
    assert layer_number(tmp_path / "job3_layer_0042.tif", None) == 42
    assert layer_number(tmp_path / "L12_cam3.png", re.compile(r"L(\d+)")) == 12
    assert layer_number(tmp_path / "photo.png", None) is None


def test_timestamps_in_names_order_layers_and_are_no_layer_numbers(tmp_path):
    from datetime import datetime

    from slmcnn.monitoring.watch import layer_order

    assert layer_number(tmp_path / "cam_20210916_104213.jpg") is None
    assert layer_timestamp(tmp_path / "cam_20210916_104213.jpg") == datetime(2021, 9, 16, 10, 42, 13)
    assert layer_number(tmp_path / "job3_layer_0042_20210916-104213.jpg") == 42
    assert layer_timestamp(tmp_path / "00017.png") is None
    names = ["cam_20210916_235959.jpg", "cam_20210917_000001.jpg", "cam_20210916_104213.jpg"]
    assert sorted(names, key=lambda n: layer_order(tmp_path / n)) == [names[2], names[0], names[1]]


def test_grading_by_sureness_extent_and_persistence():
    from slmcnn.grading import GradeRules, grade_layer
    from slmcnn.tiles import geometry

    grid = geometry(5 * 64, 6 * 64, 64)
    rules = GradeRules(region_tiles=3, share=0.5, sure=0.9, persist=3, window=4)
    classes = np.zeros((5, 6), int)
    p = np.full(30, 0.05, np.float32)
    assert grade_layer(classes, p, None, grid, rules).grade == "ok"
    classes[1, 1] = 2
    p[1 * 6 + 1] = 0.99
    lone = grade_layer(classes, p, None, grid, rules)
    assert lone.grade == "minor" and lone.lone and lone.regions[0].box == (64, 64, 128, 128)
    classes[2, 2] = classes[3, 3] = 2  # a diagonal streak: one region of three tiles
    p[2 * 6 + 2] = p[3 * 6 + 3] = 0.95
    streak = grade_layer(classes, p, None, grid, rules)
    assert streak.grade == "critical" and len(streak.regions) == 1 and streak.regions[0].tiles == 3
    assert streak.regions[0].rows == (1, 3) and "3+ sure" in streak.message()
    p[3 * 6 + 3] = 0.6  # not sure: three Error tiles, two sure
    unsure = grade_layer(classes, p, None, grid, rules)
    assert unsure.grade == "minor" and not unsure.lone
    anomaly = np.full(30, 2.0, np.float32)
    anomaly[1 * 6 + 1] = 0.5  # the camera profile finds one tile like the good layers: not sure ...
    p[3 * 6 + 3] = 0.95
    lenient = GradeRules(region_tiles=3, share=0.5, sure=0.8, persist=3, window=4)
    p[1 * 6 + 1] = 0.85
    assert grade_layer(classes, p, anomaly, grid, lenient).grade == "minor"
    assert grade_layer(classes, p, anomaly * 0 + 2, grid, lenient).grade == "critical"
    p[1 * 6 + 1] = 0.99  # ... unless the network itself is sure: the profile kept it, no anomaly needed
    assert grade_layer(classes, p, anomaly, grid, lenient).grade == "critical"
    one = np.zeros((5, 6), int)
    one[4, 0] = 2
    near = np.zeros((5, 6), int)
    near[3, 1] = 2  # within a tile of (4, 0): the same place
    far = np.zeros((5, 6), int)
    far[0, 5] = 2
    assert grade_layer(one, p, None, grid, rules, [far, far, near]).grade == "minor"  # 2 of the last 4
    recurring = grade_layer(one, p, None, grid, rules, [near, far, near])
    assert recurring.grade == "critical" and recurring.regions[0].recurring == 3
    assert grade_layer(one, p, None, grid, rules, [near, near, far, far]).grade == "minor"  # out of the window
    off = GradeRules(persist=0)
    assert grade_layer(one, p, None, grid, off, [near, near, near]).grade == "minor"


def test_grading_settings_are_checked():
    from slmcnn.errors import SettingsError
    from slmcnn.grading import GradeRules

    assert GradeRules.parse_persist("2/6") == (2, 6) and GradeRules.parse_persist("0")[0] == 0
    for bad in ("3", "a/b", "3/"):
        with pytest.raises(SettingsError, match="K/M"):
            GradeRules.parse_persist(bad)
    for settings in ({"persist": 6, "window": 5}, {"region_tiles": 0}, {"share": 0}, {"sure": 1.5}):
        with pytest.raises(SettingsError):
            GradeRules(**settings)
