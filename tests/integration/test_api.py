"""The public Python API (slmcnn.__all__) and what importing slmcnn does not do."""

import numpy as np
import pytest

import slmcnn


def test_predict_layers_takes_paths_arrays_and_one_path(tiny_build, tiny_model_file, tiny_model):
    path = str(tiny_build / "layers" / "00001.png")
    (one,) = slmcnn.predict_layers(path, tiny_model, backend="torch")
    assert isinstance(one, slmcnn.LayerResult) and str(one.path) == path
    assert sum(one.fractions.values()) == pytest.approx(1.0)
    gray = np.zeros((256, 256), np.uint8)
    results = slmcnn.predict_layers([path, gray], tiny_model_file, backend="onnx")
    assert results[1].tile_classes.shape == (2, 2) and tiny_model.info.arch == "slmcnn-tiny"
    with pytest.raises(slmcnn.errors.ImageReadError, match="no such file"):
        slmcnn.predict_layers([tiny_build / "missing.png"], tiny_model)


def test_explain_patches_and_calibrate(tiny_build, tiny_model_file):
    patches = sorted((tiny_build / "patches" / "Powder").glob("*.png"))[:1]
    (explanation,) = slmcnn.explain_patches(patches, tiny_model_file, targets=[2], steps=8)
    assert explanation.target == 2 and explanation.attribution.shape == (128, 128, 3)
    frame = np.zeros((300, 400, 3), np.uint8)
    calibration = slmcnn.calibrate(frame, [[390, 290], [10, 10], [390, 10], [10, 290]], size=256)
    assert calibration.corners == [[10, 10], [390, 10], [390, 290], [10, 290]] and calibration.size == 256


def test_an_extra_per_tile_score_reaches_the_result_and_its_json(tiny_build, tiny_model):
    from slmcnn.backends import TorchBackend
    from slmcnn.pipeline import RunOptions, run_layers

    options = RunOptions(anomaly=lambda result: np.arange(result.grid.count, dtype=np.float32))
    (outcome,) = run_layers(tiny_build / "layers" / "00002.png", TorchBackend(tiny_model), options)
    assert outcome.result.anomaly.tolist() == list(range(9))
    assert outcome.result.to_json()["anomaly"] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
