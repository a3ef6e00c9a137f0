"""The shipped model must still do what docs/MODEL_CARD.md says on the example layers."""

import json
from pathlib import Path

import numpy as np

from slmcnn.backends import TorchBackend
from slmcnn.metrics import tile_truth_and_predictions

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_shipped_model_reaches_the_claimed_example_accuracy(shipped_model):
    claim = json.loads((EXAMPLES / "expected.json").read_text())
    backend = TorchBackend(shipped_model, "fp32")
    truth, predicted = tile_truth_and_predictions(
        backend, sorted((EXAMPLES / "layers").glob("*.png")), EXAMPLES / "masks"
    )
    accuracy = float(np.mean(truth == predicted))
    assert accuracy >= claim["tile_accuracy"] - claim["margin"], (accuracy, claim)
