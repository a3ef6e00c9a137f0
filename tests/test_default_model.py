"""The shipped model must still do what docs/MODEL_CARD.md says on the example layers."""

import json
from pathlib import Path

import numpy as np

from slmcnn.backends import TorchBackend
from slmcnn.checkpoint import default_model_path, load_model, read_info
from slmcnn.metrics import tile_truth_and_predictions
from slmcnn.model import count_parameters

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_shipped_model_loads_and_is_small():
    path = default_model_path()
    assert path.is_file() and path.stat().st_size < 15 * 2**20
    info = read_info(path)
    assert info.arch == "slmcnn" and info.classes == ["Powder", "Object", "Error"] and info.training
    model, _ = load_model(path)
    assert count_parameters(model) == (3_079_171, 3_080_643)


def test_shipped_model_reaches_the_claimed_example_accuracy():
    claim = json.loads((EXAMPLES / "expected.json").read_text())
    model, _ = load_model(default_model_path())
    backend = TorchBackend(model, "fp32")
    truth, predicted = tile_truth_and_predictions(
        backend, sorted((EXAMPLES / "layers").glob("*.png")), EXAMPLES / "masks"
    )
    accuracy = float(np.mean(truth == predicted))
    assert accuracy >= claim["tile_accuracy"] - claim["margin"], (accuracy, claim)
