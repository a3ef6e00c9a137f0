"""Big photos in strips: the same results as the whole photo at once; only the files asked for."""

import numpy as np
import pytest

from slmcnn import outputs, render
from slmcnn.backends import TorchBackend
from slmcnn.pipeline import LayerOutcome
from slmcnn.predict import Predictor


@pytest.mark.parametrize("stride", [None, 64])
def test_a_photo_classified_in_strips_is_the_photo_classified_whole(tiny_model, tiny_build, stride):
    layers = sorted((tiny_build / "layers").glob("*.png"))[:3]
    whole = list(Predictor(TorchBackend(tiny_model, "fp32"), 128, stride, batch_tiles=1000).predict(layers))
    strips = list(Predictor(TorchBackend(tiny_model, "fp32"), 128, stride, batch_tiles=4).predict(layers))
    for a, b in zip(whole, strips):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
        np.testing.assert_array_equal(a.class_map, b.class_map)


def test_files_not_asked_for_are_not_made(tmp_path, tiny_model, tiny_build, monkeypatch):
    (result,) = Predictor(TorchBackend(tiny_model), 128).predict(sorted((tiny_build / "layers").glob("*.png"))[:1])

    def no_overlay(*args, **kwargs):
        raise AssertionError("an overlay was drawn")

    monkeypatch.setattr(render, "overlay", no_overlay)
    with outputs.RunFiles(tmp_path / "out", ("json",), summary=False) as files:
        written = files.add(LayerOutcome(result.path, result))
    assert set(written) == {"json"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{result.path.stem}.json"]


def test_predict_layer_writes_only_the_files_asked_for(tmp_path, tiny_model_file, tiny_build):
    from tests.conftest import run_cli

    layer = tiny_build / "layers" / "00001.png"
    args = ("predict-layer", layer, "--out", tmp_path / "out", "--model", tiny_model_file, "--backend", "torch")
    assert run_cli(*args, "--write", "json").returncode == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00001.json", "summary.csv"]
    refused = run_cli(*args, "--write", "json,thumbnail", "--force")
    assert refused.returncode != 0 and "thumbnail" in refused.stderr
