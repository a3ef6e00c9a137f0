"""Measure the shipped model's tile accuracy on examples/ and record it in examples/expected.json,
the figure docs/MODEL_CARD.md quotes and tests/integration/test_default_model.py holds the model to."""

import json
from pathlib import Path

from slmcnn.backends import TorchBackend
from slmcnn.checkpoint import default_model_path, load_model
from slmcnn.metrics import tile_truth_and_predictions

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MARGIN = 0.03  # about 5 of the 180 example tiles


def main() -> None:
    model, info = load_model(default_model_path())
    backend = TorchBackend(model, "fp32")
    truth_all, predicted_all = tile_truth_and_predictions(
        backend, sorted((EXAMPLES / "layers").glob("*.png")), EXAMPLES / "masks"
    )
    accuracy = float((truth_all == predicted_all).mean())
    record = {
        "tile_accuracy": round(accuracy, 4),
        "tiles": int(len(truth_all)),
        "margin": MARGIN,
        "model_run": info.name,
        "precision": "fp32",
    }
    (EXAMPLES / "expected.json").write_text(json.dumps(record, indent=1) + "\n")
    print(record)


if __name__ == "__main__":
    main()
