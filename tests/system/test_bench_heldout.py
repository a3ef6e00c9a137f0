"""benchmarks/bench_heldout.py: synthetic macro F1 on fresh builds, with its spread."""

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from slmcnn.labels import ERROR, OBJECT, POWDER, LabelRule
from slmcnn.synth import SynthSettings, generate_build
from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_heldout")


class Bright:
    """Calls a tile Error when bright, Object when middling, else Powder: any fixed answer will do."""

    def probabilities(self, patches: np.ndarray) -> np.ndarray:
        mean = patches.reshape(len(patches), -1).mean(1)
        return np.eye(3)[np.where(mean > 160, ERROR, np.where(mean > 120, OBJECT, POWDER))]


def test_macro_f1_is_scikit_learns(bench):
    truth = np.array([0, 0, 1, 1, 2, 2, 2, 0, 1, 2])
    pred = np.array([0, 1, 1, 1, 2, 0, 2, 0, 2, 2])
    confusion = np.zeros((3, 3), int)
    np.add.at(confusion, (truth, pred), 1)
    assert bench.scores(confusion)["macro_f1"] == pytest.approx(f1_score(truth, pred, average="macro"))


def test_spread_of_identical_builds_is_one_point_and_groups_are_disjoint(bench):
    build = np.array([[5, 1, 0], [0, 4, 1], [2, 0, 3]])
    result = bench.spread([build] * 7, group=3)
    f1 = bench.scores(build)["macro_f1"]
    assert result["interval_95"] == [pytest.approx(f1), pytest.approx(f1)]
    assert result["groups"]["count"] == 2  # 7 builds make two whole groups of 3
    assert result["groups"]["min"] == result["groups"]["max"] == pytest.approx(f1)


def test_rendered_builds_are_what_synth_writes(bench, tmp_path):
    generate_build(
        SynthSettings(layers=2, seed=7000, direction="random", write_patches=False), tmp_path / "7000", workers=1
    )
    rule = LabelRule()
    fresh = bench.confusions({"m": Bright()}, bench.rendered_builds(1, 7000, 2), rule)
    written = bench.confusions({"m": Bright()}, bench.folder_builds([tmp_path / "7000"]), rule)
    assert fresh[0] == written[0] == ["7000"]
    for kind in ("clear", "all"):
        assert np.array_equal(fresh[1]["m"][kind][0], written[1]["m"][kind][0])
    assert fresh[1]["m"]["all"][0].sum() == 2 * 36  # two 768x768 layers of 36 tiles


def test_clear_tiles_leave_out_the_ambiguous_ones(bench, tiny_build):
    from slmcnn import images as image_io
    from slmcnn.tiles import cut, geometry

    rule = LabelRule()
    names, found = bench.confusions({"m": Bright()}, bench.folder_builds([tiny_build]), rule)
    ambiguous = 0
    for mask in sorted((tiny_build / "masks").iterdir()):
        m = image_io.read(mask)
        ambiguous += int(rule.ambiguous(cut(m[..., :1], geometry(*m.shape[:2], 128))[..., 0]).sum())
    assert found["m"]["all"][0].sum() - found["m"]["clear"][0].sum() == ambiguous
    assert found["m"]["all"][0].sum() == 10 * 9


def test_cli_scores_each_model_on_folders(bench, tiny_build, tiny_model_file, tmp_path, capsys):
    out = tmp_path / "heldout.json"
    assert (
        bench.main(["--model", str(tiny_model_file), "--folder", str(tiny_build), "--group", "1", "--json", str(out)])
        == 0
    )
    result = json.loads(out.read_text())
    figures = result["models"][str(tiny_model_file)]
    assert result["builds"] == [tiny_build.name]
    assert 0 <= figures["macro_f1"] <= 1
    assert sum(row["tiles"] for row in figures["classes"].values()) == figures["tiles"]
    assert "macro F1" in capsys.readouterr().out


def test_bad_input_is_one_clear_error(bench, tmp_path):
    with pytest.raises(SystemExit, match="model file not found"):
        bench.main(["--model", str(tmp_path / "none.safetensors")])
    with pytest.raises(SystemExit):
        bench.main(["--builds", "0"])
    (tmp_path / "empty" / "layers").mkdir(parents=True)
    with pytest.raises(SystemExit, match="no layer photos"):
        bench.main(["--folder", str(tmp_path / "empty")])
