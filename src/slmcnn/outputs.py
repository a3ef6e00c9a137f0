"""The files of a run: per layer an overlay, a class map, a JSON document (and an attribution
heat map when explained), plus summary.csv and index.html for the whole run (with each layer's
anomaly heat map when a camera profile scored it); and the one order and numbering of layer photos
that every command and page shares (the number in the name, then time).

PNG compression releases the GIL, so layers are written on a background thread while the network
runs on the next ones; at most `max_pending` layers wait, which bounds memory.
"""

import csv
import json
import re
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from slmcnn import render
from slmcnn.constants import CLASSES
from slmcnn.errors import OutputError, SettingsError
from slmcnn.files import atomic_path, describe, resolved, storable, writable, write_text
from slmcnn.images import to_uint8, write_png
from slmcnn.pngstrips import write_png_strips

if TYPE_CHECKING:
    from slmcnn.predict import LayerOutcome, LayerResult

FILE_KINDS = ("overlay", "classes", "json", "attribution")
SUMMARY_FIELDS = [
    "image", "width", "height", "tiles", *(f"{c.lower()}_fraction" for c in CLASSES), "seconds", "grade", "regions", "defect",
]  # fmt: skip
SCORE_FIELDS = ["tile_accuracy", "error_f1", "error_iou"]


TIMESTAMP = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})[_T-]?(\d{2})(\d{2})(\d{2})(?!\d)")


def layer_timestamp(path: Path) -> datetime | None:
    """The date and time stamp in a file name, if any."""
    match = TIMESTAMP.search(path.stem)
    try:
        return datetime(*map(int, match.groups())) if match else None
    except ValueError:
        return None


def layer_number(path: Path, pattern: re.Pattern | None = None) -> int | None:
    """The layer number in a file name: the pattern's first group, or the last number in the stem
    that is not part of a date-and-time stamp."""
    if pattern is not None:
        match = pattern.search(path.name)
        number = match.group(1) if match else None
        return int(number) if number and number.isdigit() else None
    numbers = re.findall(r"\d+", TIMESTAMP.sub(" ", path.stem))
    return int(numbers[-1]) if numbers else None


def layer_order(path: Path, pattern: re.Pattern | None = None) -> tuple:
    """The one order of layer photos (the monitor, predict-layer, the HTML page, the app and the
    report): the layer number in the name, else its date-and-time stamp, else the file's time."""
    number = layer_number(path, pattern)
    if number is not None:
        return (0, number, path.name)
    stamp = layer_timestamp(path)
    return (1, stamp.timestamp(), path.name) if stamp else (2, path.stat().st_mtime, path.name)


def in_layer_order(paths: Iterable[Path]) -> list[Path]:
    """Photos in layer order within each folder, the folders in the order they were given:
    unrelated folders are not interleaved by number."""
    paths = list(dict.fromkeys(paths))
    folders = list(dict.fromkeys(p.parent for p in paths))
    return sorted(paths, key=lambda p: (folders.index(p.parent), layer_order(p)))


def unique_stems(paths: Iterable[Path]) -> dict[Path, str]:
    """Output names per input, each its own: layers of the same name in different folders get the
    folder prefixed, the same name of another format (x.png, x.jpg) its suffix too, and whatever
    still meets another name a number."""
    stems: dict[str, list[Path]] = {}
    for p in dict.fromkeys(paths):  # a file given twice is one layer
        stems.setdefault(p.stem, []).append(p)
    names: dict[Path, str] = {}
    taken: set[str] = set()
    for stem, group in stems.items():
        parents = [p.parent.name for p in group]
        for p in group:
            name = stem if len(group) == 1 else f"{p.parent.name}_{stem}"
            if len(group) > 1 and parents.count(p.parent.name) > 1:
                name += "_" + p.suffix.lstrip(".").lower()
            unique, n = name, 2
            while unique in taken:
                unique, n = f"{name}_{n}", n + 1
            names[p] = unique
            taken.add(unique)
    return names


def layer_files(out: Path, stem: str, kinds: Iterable[str]) -> dict[str, Path]:
    suffix = {"overlay": ".overlay.png", "classes": ".classes.png", "json": ".json", "attribution": ".attribution.png"}
    return {kind: out / f"{stem}{suffix[kind]}" for kind in kinds}


def layer_document(outcome: "LayerOutcome") -> dict:
    """The JSON of one layer: the result, and its score against a mask when there is one."""
    doc = outcome.result.to_json()
    if outcome.score is not None:
        doc["truth"] = outcome.score.to_json()
    return doc


def write_layer(outcome: "LayerOutcome", files: dict[str, Path]) -> None:
    """The layer's files; the overlay is drawn and both PNGs compressed a strip of rows at a time
    on all cores (pngstrips), so a photo of any size costs a few strips of memory."""
    result = outcome.result
    (height, width), image, classes = result.class_map.shape, result.image, result.class_map
    for kind, path in files.items():
        if kind == "overlay":
            write_png_strips(path, height, width, 3, lambda y0, y1: render.overlay(image[y0:y1], classes[y0:y1], y0=y0))
        elif kind == "classes":
            write_png_strips(path, height, width, 1, lambda y0, y1: classes[y0:y1])
        elif kind == "json":
            write_text(path, json.dumps(layer_document(outcome)))
        elif kind == "attribution":
            write_png(path, render.heatmap_png(outcome.attribution, result.image))


def shown_anomaly(result: "LayerResult") -> np.ndarray | None:
    """The layer's tile anomaly as its page shows it: (rows, cols), NaN where the tile is ignored."""
    if result.anomaly is None:
        return None
    anomaly = result.anomaly.reshape(result.grid.shape).astype(np.float32)
    return anomaly if result.ignored is None else np.where(result.ignored.reshape(anomaly.shape), np.nan, anomaly)


class LayerWriter:
    """write_layer on a background thread; an error while writing is raised by the next submit()
    or by close()."""

    def __init__(self, max_pending: int = 4):
        self.max_pending = max_pending
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="slmcnn-writer")
        self.pending: deque = deque()

    def submit(self, outcome: "LayerOutcome", files: dict[str, Path]) -> None:
        while len(self.pending) >= self.max_pending:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(write_layer, outcome, files))

    def close(self) -> None:
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True)


class SummaryWriter:
    """summary.csv with one row per layer, written as layers finish under a temporary name that
    becomes summary.csv when the run closes."""

    def __init__(self, path: Path, scored: bool = False):
        self.atomic = atomic_path(path)
        self.handle = open(self.atomic.__enter__(), "w", newline="")
        fields = SUMMARY_FIELDS + (SCORE_FIELDS if scored else [])
        self.writer = csv.DictWriter(self.handle, fieldnames=fields, extrasaction="ignore")
        self.writer.writeheader()

    def add(self, outcome: "LayerOutcome") -> None:
        result, score = outcome.result, outcome.score
        row = {
            "image": storable(str(result.path)),
            "width": result.grid.width,
            "height": result.grid.height,
            "tiles": result.grid.count,
            "seconds": round(result.seconds, 4),
            **{f"{c.lower()}_fraction": round(f, 5) for c, f in result.fractions.items()},
        }
        if result.grade is not None:
            defects = result.grade.defects
            row.update(grade=result.grade.grade, regions=len(defects), defect=defects[0].describe() if defects else "")
        if score is not None:
            row.update(
                tile_accuracy=score.tile_accuracy,
                error_f1=score.tiles["Error"].f1,
                error_iou=score.pixel_iou["Error"],
            )
        self.writer.writerow(row)
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()
        self.atomic.__exit__(None, None, None)


class RunFiles:
    """Where a run's files go: `kinds` per layer in `out`, named after the layer's file (with the
    folder's name where `inputs` holds several of one name; with `prefix`), and optionally summary.csv
    and an index.html page of all layers (`html_title` may use {layers})."""

    def __init__(
        self,
        out: str | Path,
        kinds: Iterable[str] = ("overlay", "classes", "json"),
        inputs: Iterable[Path] = (),
        prefix: str = "",
        summary: bool = True,
        scored: bool = False,
        html_title: str | None = None,
        background: bool = True,
    ):
        self.out = writable(out)
        self.kinds = tuple(k.strip() for k in kinds)
        if set(self.kinds) - set(FILE_KINDS):
            unknown = ", ".join(sorted(set(self.kinds) - set(FILE_KINDS)))
            raise SettingsError(f"unknown file kind(s) {unknown}; known: {', '.join(FILE_KINDS)}")
        inputs = list(inputs)
        self.names = unique_stems(inputs)
        self.prefix = prefix
        self._refuse_inputs(inputs)
        self.summary = SummaryWriter(self.out / "summary.csv", scored) if summary else None
        self.html_title = html_title
        self.page: list[render.PageEntry] = []
        self.writer = LayerWriter() if background else None

    def _refuse_inputs(self, inputs: list[Path]) -> None:
        """No file of the run may replace one of its inputs, `force` or not: checked before any work."""
        planned = [self.out / "summary.csv", self.out / "index.html"]
        for name in self.names.values():
            planned += layer_files(self.out, self.prefix + name, FILE_KINDS).values()
        try:
            given, outputs = {resolved(p) for p in inputs}, [resolved(path) for path in planned]
        except OSError as exc:
            raise OutputError(f"cannot use {describe(exc)}") from None
        for path, real in zip(planned, outputs, strict=True):
            if real in given:
                raise OutputError(f"{path} would replace an input of this run; choose another output folder")

    def add(self, outcome: "LayerOutcome") -> dict[str, Path]:
        """Write (or queue) the files of one classified layer; return their paths."""
        result = outcome.result
        name = self.prefix + self.names.get(result.path, result.path.stem)
        kinds = [k for k in self.kinds if k != "attribution" or outcome.attribution is not None]
        files = layer_files(self.out, name, kinds)
        if self.writer:
            self.writer.submit(outcome, files)
        else:
            write_layer(outcome, files)
        if self.summary:
            self.summary.add(outcome)
        if self.html_title is not None:
            small = to_uint8(result.image)[::2, ::2]
            overlay = render.overlay(result.image, result.class_map)[::2, ::2]
            grade = result.grade  # the pipeline grades each layer once, with the layers before it
            sure = render.sureness(result.probabilities, result.tile_classes)
            self.page.append(
                render.PageEntry(
                    name,
                    small,
                    overlay,
                    result.fractions,
                    outcome.score,
                    shown_anomaly(result),
                    grade,
                    sure,
                    layer_number(result.path),
                )  # fmt: skip
            )
        return files

    def close(self) -> None:
        try:
            if self.writer:
                self.writer.close()
        finally:
            if self.summary:
                self.summary.close()
        if self.html_title is not None:
            title = self.html_title.replace("{layers}", str(len(self.page)))
            write_text(self.out / "index.html", render.layers_page(self.page, title))

    def __enter__(self) -> "RunFiles":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_explanation(out: Path, path: Path, patch: np.ndarray, explanation) -> Path:
    """<stem>.ig.png: the reference's 2x2 figure (baseline, patch, attribution, overlay)."""
    writable(out)
    e = explanation
    title = f"{path.name}: {CLASSES[e.target]} p={e.probability:.3f}, delta={e.delta:+.4f}"
    figure = out / f"{path.stem}.ig.png"
    render.attribution_figure(e.baseline_image, patch, e.attribution, title, figure)
    return figure


def write_evaluation(report, out: str | Path) -> None:
    """confusion_matrix.png and report.json of an evaluation."""
    out = writable(out)
    render.plot_confusion(report.confusion, out / "confusion_matrix.png")
    write_text(out / "report.json", json.dumps(report.to_json(), indent=2))
