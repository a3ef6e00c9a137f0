"""Writing results: per-layer PNG / JSON files and the summary CSV (and, for monitoring, SQLite)."""

import csv
import json
from pathlib import Path

import numpy as np

from slmcnn import CLASSES, render
from slmcnn.images import write_png
from slmcnn.predict import LayerResult

SUMMARY_FIELDS = ["image", "width", "height", "tiles", *(f"{c.lower()}_fraction" for c in CLASSES), "seconds"]


def unique_stems(paths: list[Path]) -> dict[Path, str]:
    """Output names per input; layers of the same name in different folders get the folder prefixed."""
    stems: dict[str, list[Path]] = {}
    for p in paths:
        stems.setdefault(p.stem, []).append(p)
    names = {}
    for stem, group in stems.items():
        for p in group:
            names[p] = stem if len(group) == 1 else f"{p.parent.name}_{stem}"
    return names


def write_layer(result: LayerResult, out: Path, stem: str) -> dict[str, Path]:
    """<stem>.overlay.png, <stem>.classes.png and <stem>.json for one layer."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "overlay": out / f"{stem}.overlay.png",
        "classes": out / f"{stem}.classes.png",
        "json": out / f"{stem}.json",
    }
    write_png(files["overlay"], render.overlay(result.image, result.class_map))
    write_png(files["classes"], result.class_map)
    files["json"].write_text(json.dumps(result.to_json()))
    return files


class SummaryWriter:
    """summary.csv with one row per layer, written as layers finish."""

    def __init__(self, path: Path, extra_fields: list[str] | None = None):
        self.fields = SUMMARY_FIELDS + (extra_fields or [])
        self.handle = open(path, "w", newline="")
        self.writer = csv.DictWriter(self.handle, fieldnames=self.fields, extrasaction="ignore")
        self.writer.writeheader()

    def add(self, result: LayerResult, extra: dict | None = None) -> None:
        row = {
            "image": str(result.path),
            "width": result.grid.width,
            "height": result.grid.height,
            "tiles": int(np.prod(result.grid.shape)),
            "seconds": round(result.seconds, 4),
            **{f"{c.lower()}_fraction": round(f, 5) for c, f in result.fractions.items()},
            **(extra or {}),
        }
        self.writer.writerow(row)
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()
