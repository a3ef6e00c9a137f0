"""The reference's results table (precision / recall / F1 per class, accuracy, averages), via scikit-learn."""

import json
from dataclasses import asdict, dataclass

import numpy as np

from slmcnn.constants import CLASSES

ROWS = (*CLASSES, "macro avg", "weighted avg")
COLUMNS = ("precision", "recall", "f1-score")


@dataclass
class Report:
    """Metrics of one evaluation: per-class rows, accuracy and the confusion matrix (rows = truth)."""

    table: dict
    accuracy: float
    confusion: np.ndarray
    support: dict

    @property
    def macro_f1(self) -> float:
        return self.table["macro avg"]["f1-score"]

    def to_json(self) -> dict:
        return {
            "classes": list(CLASSES),
            "table": self.table,
            "accuracy": self.accuracy,
            "support": self.support,
            "confusion_matrix": self.confusion.tolist(),
        }

    def to_markdown(self) -> str:
        lines = ["| Class | Precision | Recall | F1-Score | Support |", "| --- | --- | --- | --- | --- |"]
        for row in ROWS:
            cells = " | ".join(f"{self.table[row][c]:.4f}" for c in COLUMNS)
            lines.append(f"| {row} | {cells} | {self.support[row]} |")
        lines.insert(2 + len(CLASSES), f"| accuracy | | | {self.accuracy:.4f} | {self.support['macro avg']} |")
        return "\n".join(lines)

    def to_text(self) -> str:
        head = f"{'':>14}{'precision':>11}{'recall':>9}{'f1-score':>10}{'support':>9}"
        lines = [head]
        for row in ROWS:
            vals = "".join(f"{self.table[row][c]:>{w}.4f}" for c, w in zip(COLUMNS, (11, 9, 10)))
            lines.append(f"{row:>14}{vals}{self.support[row]:>9}")
            if row == CLASSES[-1]:
                lines += ["", f"{'accuracy':>14}{'':>20}{self.accuracy:>10.4f}{self.support['macro avg']:>9}"]
        lines += ["", "confusion matrix (rows: true, columns: predicted " + "/".join(CLASSES) + ")"]
        lines += ["  " + " ".join(f"{v:>7d}" for v in row) for row in self.confusion]
        return "\n".join(lines)

    def format(self, kind: str) -> str:
        return {"text": self.to_text, "md": self.to_markdown, "json": lambda: json.dumps(self.to_json(), indent=2)}[
            kind
        ]()


def compute_report(y_true: np.ndarray, y_pred: np.ndarray) -> Report:
    from sklearn.metrics import classification_report, confusion_matrix  # seconds to import: when used

    labels = list(range(len(CLASSES)))
    raw = classification_report(
        y_true, y_pred, labels=labels, target_names=list(CLASSES), output_dict=True, zero_division=0
    )
    table = {row: {c: float(raw[row][c]) for c in COLUMNS} for row in ROWS}
    support = {row: int(raw[row]["support"]) for row in ROWS}
    accuracy = float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else 0.0
    return Report(table, accuracy, confusion_matrix(y_true, y_pred, labels=labels), support)


def summarise_runs(reports: list[Report]) -> str:
    """Mean ± std over repeated runs, in the layout of the reference README's results table."""

    def cell(values: list[float]) -> str:
        return f"{np.mean(values):.4f}±{np.std(values):.4f}"

    lines = ["| Class | Precision | Recall | F1-Score |", "| --- | --- | --- | --- |"]
    for row in ROWS:
        cells = " | ".join(cell([r.table[row][c] for r in reports]) for c in COLUMNS)
        name = {"macro avg": "Macro Average", "weighted avg": "Weighted Average"}.get(row, row)
        lines.append(f"| {name} | {cells} |")
        if row == CLASSES[-1]:
            lines.append(f"| Accuracy | | | {cell([r.accuracy for r in reports])} |")
    return "\n".join(lines)


@dataclass
class ClassScore:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class LayerScore:
    """One layer against its label mask: tile accuracy, per-class tile scores and pixel IoU."""

    tile_accuracy: float
    tiles: dict[str, ClassScore]
    pixel_iou: dict[str, float]

    def to_json(self) -> dict:
        return {
            "tile_accuracy": self.tile_accuracy,
            "tiles": {c: asdict(score) for c, score in self.tiles.items()},
            "pixel_iou": self.pixel_iou,
        }


def score_layer(tile_truth: np.ndarray, tile_pred: np.ndarray, mask: np.ndarray, class_map: np.ndarray) -> LayerScore:
    from sklearn.metrics import jaccard_score, precision_recall_fscore_support

    """Per-class tile precision / recall / F1 and per-class pixel IoU of one layer against its mask."""
    labels = list(range(len(CLASSES)))
    p, r, f, s = precision_recall_fscore_support(tile_truth, tile_pred, labels=labels, zero_division=0)
    iou = jaccard_score(mask.ravel(), class_map.ravel(), labels=labels, average=None, zero_division=0)
    return LayerScore(
        float(np.mean(tile_truth == tile_pred)) if len(tile_truth) else 0.0,
        {c: ClassScore(float(p[i]), float(r[i]), float(f[i]), int(s[i])) for i, c in enumerate(CLASSES)},
        {c: float(iou[i]) for i, c in enumerate(CLASSES)},
    )


def tile_truth_and_predictions(backend, layers: list, masks_dir, patch: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Tile labels from each layer's mask (the hard label rule) and the backend's predicted classes."""
    from pathlib import Path

    from slmcnn.images import read
    from slmcnn.labels import tile_labels
    from slmcnn.tiles import tile

    truth, predicted = [], []
    for layer in layers:
        grid = tile(read(layer), patch)
        truth.append(tile_labels(read(Path(masks_dir) / Path(layer).name)[..., 0], grid.geometry))
        predicted.append(backend.probabilities(grid.patches).argmax(1))
    return np.concatenate(truth), np.concatenate(predicted)
