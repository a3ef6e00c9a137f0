"""The public Python API (slmcnn.__all__) and what importing slmcnn does not do."""

import subprocess
import sys

import numpy as np
import pytest

import slmcnn
from slmcnn.labels import NOT_A_CLASS, NOT_A_CLASS_PIXEL, LabelRule, tile_labels
from slmcnn.tiles import geometry


def test_the_public_names():
    assert set(slmcnn.__all__) >= {
        "load_model",
        "create_backend",
        "predict_layers",
        "explain_patches",
        "train",
        "calibrate",
        "LayerResult",
    }
    assert all(getattr(slmcnn, name) is not None for name in slmcnn.__all__)
    from slmcnn.train import TrainConfig  # the module of the same name does not replace the function

    assert callable(slmcnn.train) and TrainConfig


def test_importing_slmcnn_changes_nothing_global():
    code = (
        "import matplotlib, torch._inductor.config as inductor; before = matplotlib.get_backend(); "
        "import slmcnn, slmcnn.cli, slmcnn.pipeline, slmcnn.render, slmcnn.monitoring, slmcnn.backends; "
        "assert matplotlib.get_backend() == before and not inductor.freezing; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "ok", result.stderr


def test_predict_layers_takes_paths_arrays_and_one_path(tiny_build, tiny_model_file):
    model = slmcnn.load_model(tiny_model_file)
    path = str(tiny_build / "layers" / "00001.png")
    (one,) = slmcnn.predict_layers(path, model, backend="torch")
    assert isinstance(one, slmcnn.LayerResult) and str(one.path) == path
    assert sum(one.fractions.values()) == pytest.approx(1.0)
    gray = np.zeros((256, 256), np.uint8)
    results = slmcnn.predict_layers([path, gray], tiny_model_file, backend="onnx")
    assert results[1].tile_classes.shape == (2, 2) and model.info.arch == "slmcnn-tiny"
    with pytest.raises(slmcnn.errors.ImageReadError, match="no such file"):
        slmcnn.predict_layers([tiny_build / "missing.png"], model)


def test_explain_patches_and_calibrate(tiny_build, tiny_model_file):
    patches = sorted((tiny_build / "patches" / "Powder").glob("*.png"))[:1]
    (explanation,) = slmcnn.explain_patches(patches, tiny_model_file, targets=[2], steps=8)
    assert explanation.target == 2 and explanation.attribution.shape == (128, 128, 3)
    frame = np.zeros((300, 400, 3), np.uint8)
    calibration = slmcnn.calibrate(frame, [[390, 290], [10, 10], [390, 10], [10, 290]], size=256)
    assert calibration.corners == [[10, 10], [390, 10], [390, 290], [10, 290]] and calibration.size == 256


def test_tile_labels_is_the_one_mask_to_label_rule():
    mask = np.zeros((256, 384), np.uint8)
    mask[:128, 128:256] = 1  # a part filling tile (0, 1)
    mask[130:140, 10:20] = 2  # 100 error pixels: below the rule's 120, ambiguous
    mask[200:220, 300:320] = 2  # 400: Error
    where = geometry(256, 384, 128)
    assert tile_labels(mask, where).reshape(2, 3).tolist() == [[0, 1, 0], [0, 0, 2]]
    strict = tile_labels(mask, where, LabelRule(), ambiguous=False).reshape(2, 3)
    assert strict.tolist() == [[0, 1, 0], [NOT_A_CLASS, 0, 2]]
    assert NOT_A_CLASS_PIXEL == 255 and np.uint8(NOT_A_CLASS_PIXEL) == np.uint8(NOT_A_CLASS % 256)
    with pytest.raises(slmcnn.errors.DataError, match="384x256"):
        tile_labels(mask[:128], where)


def test_an_extra_per_tile_score_reaches_the_result_and_its_json(tiny_build, tiny_model_file):
    from slmcnn.backends import TorchBackend
    from slmcnn.pipeline import RunOptions, run_layers

    model = slmcnn.load_model(tiny_model_file)
    options = RunOptions(anomaly=lambda result: np.arange(result.grid.count, dtype=np.float32))
    (outcome,) = run_layers(tiny_build / "layers" / "00002.png", TorchBackend(model), options)
    assert outcome.result.anomaly.tolist() == list(range(9))
    assert outcome.result.to_json()["anomaly"] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
