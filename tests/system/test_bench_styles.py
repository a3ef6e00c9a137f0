"""benchmarks/bench_styles.py: the issue's unseen-camera figures on synthetic stand-ins."""

import json

import numpy as np
import pytest

from slmcnn.labels import ERROR, OBJECT, POWDER
from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_styles")


class Fixed:
    """A classifier that answers the given classes, layer after layer."""

    def __init__(self, answers: list[list[int]]):
        self.answers = iter(answers)

    def probabilities(self, patches: np.ndarray) -> np.ndarray:
        return np.eye(3)[next(self.answers)]


def _facts(part: list[float], defect: list[bool], sound: bool) -> dict:
    return {
        "patches": np.zeros((len(part), 4, 4, 3), np.uint8),
        "part": np.array(part),
        "defect": np.array(defect),
        "sound": sound,
    }


def test_figures_follow_the_issue_definitions(bench):
    facts = [
        _facts([0.0, 0.10, 0.02, 0.0], [False] * 4, sound=True),
        _facts([0.0, 0.30, 0.0, 0.0], [True, False, True, False], sound=False),
    ]
    answers = [[ERROR, OBJECT, OBJECT, POWDER], [ERROR, OBJECT, POWDER, ERROR]]
    figures = bench.measure(Fixed(answers), facts)
    assert figures["sound_called_error"] == 0.25
    assert figures["object_recall"] == 1.0  # the one tile with >= 5% part
    assert figures["object_precision"] == 1.0  # both Object calls hold some part
    assert figures["defect_found"] == 0.5
    assert figures["unmarked_called_error"] == 0.5
    assert bench.counts(facts) == {"sound_tiles": 4, "object_tiles": 1, "defect_tiles": 2}


def test_sound_builds_hold_no_defect_and_the_others_do(bench):
    rendered = bench.render_style("reference", builds=1, layers=4)
    sound = [r for r in rendered if r["sound"]]
    faulty = [r for r in rendered if not r["sound"]]
    assert len(sound) == len(faulty) == 4
    assert not any((r["mask"] == ERROR).any() for r in sound)
    assert any((r["mask"] == ERROR).any() for r in faulty)
    assert all(r["image"].shape == (768, 768, 3) for r in rendered)


def test_each_style_draws_its_camera(bench):
    looks = {}
    for style in bench.STYLES:
        settings = bench.style_settings(style, seed=1, layers=1, defects=False)
        assert settings.defect_rates == {}
        looks[style] = settings
    assert looks["after-exposure"].after_exposure == (1.0, 1.0)
    assert looks["reference"].after_exposure == (0.0, 0.0)
    assert looks["angled"].walls_share == 1.0
    angled = bench.style_settings("angled", seed=1, layers=1, defects=True).defect_rates
    assert {kind for kind, rate in angled.items() if rate > 0} == set(bench.STYLES["angled"]["defects"])


def test_cli_prints_json_for_each_model(bench, tiny_model_file, capsys):
    assert (
        bench.main(
            ["--model", str(tiny_model_file), "--builds", "1", "--layers", "1", "--style", "reference", "--json"]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)["reference"]
    assert set(result["look"]) == set(bench.STYLES["reference"]["real"])
    figures = result["models"][str(tiny_model_file)]
    assert result["sound_tiles"] == 36
    assert 0 <= figures["sound_called_error"] <= 1


def test_a_missing_model_or_no_builds_is_one_clear_error(bench, tmp_path):
    with pytest.raises(SystemExit, match="model file not found"):
        bench.main(["--model", str(tmp_path / "none.safetensors")])
    with pytest.raises(SystemExit):
        bench.main(["--builds", "0"])
