"""Which tiles to label next: those whose label teaches the model the most, so that 100 labels do
what 200 random ones do (benchmarks/bench_app_finetune.py --active measures it).

A tile's worth is how unsure the model is of it (one minus the margin between its two likeliest
classes) plus how unlike the camera's good layers it is (the profile's anomaly, where there is
one). Picked in turn from each class the model predicts, the rarest first, so that the few Error
tiles of a set are not drowned by its many Powder ones; tiles of one layer are spread (none next
to another already picked) and no layer gets much more than its share."""

import math
from dataclasses import dataclass

import numpy as np

from slmcnn.app.sources import LayerData
from slmcnn.constants import CLASSES, NOT_A_CLASS


@dataclass
class Proposal:
    index: int  # the layer's place in its set
    layer: str
    row: int
    col: int
    predicted: str
    score: float
    why: str


def tile_worth(probabilities: np.ndarray, anomaly: np.ndarray | None) -> np.ndarray:
    """Per tile (row-major): unsureness (1 - margin of the two likeliest classes) + anomaly / 4 (at most 0.5)."""
    ordered = np.sort(probabilities, axis=1)
    worth = 1.0 - (ordered[:, -1] - ordered[:, -2])
    if anomaly is not None:
        worth = worth + np.clip(np.nan_to_num(anomaly, nan=0.0), 0, 2) / 4
    return worth


def propose(layers: list[LayerData], labelled: dict[str, set[tuple[int, int]]], count: int) -> list[Proposal]:
    """Up to `count` tiles to label next among the layers' unlabelled tiles (`labelled`: per layer
    file, the (row, col) that have a label)."""
    candidates: dict[int, list[tuple[float, int, int, int]]] = {}  # predicted class -> (worth, layer, row, col)
    for position, data in enumerate(layers):
        cols = data.geometry.shape[1]
        worth = tile_worth(data.probabilities, data.anomaly)
        done = labelled.get(data.ref.layer, set())
        for i, cls in enumerate(data.classes.ravel()):
            row, col = divmod(i, cols)
            if cls != NOT_A_CLASS and (row, col) not in done:
                candidates.setdefault(int(cls), []).append((float(worth[i]), position, row, col))
    for found in candidates.values():
        found.sort(reverse=True)
    share = math.ceil(count / max(len(layers), 1))
    per_layer: dict[int, int] = {}
    taken: dict[int, set[tuple[int, int]]] = {}
    picked: list[Proposal] = []
    order = sorted(candidates, key=lambda c: len(candidates[c]))  # the rarest predicted class first
    cursors = dict.fromkeys(order, 0)
    while len(picked) < count and any(cursors[c] < len(candidates[c]) for c in order):
        for cls in order:
            found = candidates[cls]
            while cursors[cls] < len(found):
                worth, position, row, col = found[cursors[cls]]
                cursors[cls] += 1
                near = any(abs(row - r) <= 1 and abs(col - c) <= 1 for r, c in taken.get(position, ()))
                if per_layer.get(position, 0) >= share or near:
                    continue
                per_layer[position] = per_layer.get(position, 0) + 1
                taken.setdefault(position, set()).add((row, col))
                picked.append(proposal(layers[position], row, col, cls, worth))
                break
            if len(picked) >= count:
                break
    rest = sorted((t for found in candidates.values() for t in found), reverse=True)  # spread no more: fill up
    for worth, position, row, col in rest:
        if len(picked) >= count:
            break
        if (row, col) not in taken.get(position, ()):
            taken.setdefault(position, set()).add((row, col))
            cls = int(layers[position].classes[row, col])
            picked.append(proposal(layers[position], row, col, cls, worth))
    return picked


def proposal(data: LayerData, row: int, col: int, cls: int, worth: float) -> Proposal:
    i = row * data.geometry.shape[1] + col
    p = data.probabilities[i]
    first, second = np.argsort(p)[::-1][:2]
    why = f"unsure: {CLASSES[first]} {p[first]:.2f} / {CLASSES[second]} {p[second]:.2f}"
    if data.anomaly is not None and data.anomaly[i] > 1:
        why += f"; unlike the good layers (anomaly {data.anomaly[i]:.1f})"
    return Proposal(data.index, data.ref.layer, row, col, CLASSES[cls], round(worth, 4), why)
