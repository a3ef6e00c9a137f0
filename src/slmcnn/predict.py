"""Whole-layer classification: decode and tile the next layers while the network runs on this batch.

A Predictor takes paths (or arrays), batches the tiles of several layers into one network call, and
returns a LayerResult per layer with tile probabilities, a per-pixel class map and class fractions.
"""

import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slmcnn import CLASSES
from slmcnn import images as image_io
from slmcnn.camera import IGNORED, CameraCalibration, tile_ignored
from slmcnn.errors import SlmcnnError
from slmcnn.tiles import TileGrid, stitch_classes, tile

IGNORED_PIXEL = 255


@dataclass
class LayerResult:
    """Everything predicted for one layer photo."""

    path: Path
    image: np.ndarray
    grid: TileGrid
    probabilities: np.ndarray  # (tiles, classes), row-major over the grid
    class_map: np.ndarray  # (H, W) uint8; IGNORED_PIXEL where a calibration says to ignore
    seconds: float
    model: str = ""
    extra: dict = field(default_factory=dict)
    ignored: np.ndarray | None = None  # per tile, row-major: mostly in an ignored area

    @property
    def tile_classes(self) -> np.ndarray:
        """Class index per tile; IGNORED (-1) for ignored tiles, which never count as anything."""
        classes = self.probabilities.argmax(1)
        if self.ignored is not None:
            classes = np.where(self.ignored, IGNORED, classes)
        return classes.reshape(self.grid.shape)

    @property
    def fractions(self) -> dict[str, float]:
        """Share of the (not ignored) bed per class."""
        counts = np.bincount(self.class_map.ravel(), minlength=IGNORED_PIXEL + 1)[: len(CLASSES)]
        total = max(int(counts.sum()), 1)
        return {c: float(n) / total for c, n in zip(CLASSES, counts)}

    def to_json(self) -> dict:
        rows, cols = self.grid.shape
        return {
            "image": str(self.path),
            "width": self.grid.width,
            "height": self.grid.height,
            "patch": self.grid.patch,
            "stride": self.grid.stride,
            "classes": list(CLASSES),
            "grid": self.tile_classes.tolist(),
            "tile_origins": {"y": self.grid.ys.tolist(), "x": self.grid.xs.tolist()},
            "probabilities": np.round(self.probabilities.reshape(rows, cols, -1), 5).tolist(),
            "fractions": self.fractions,
            "model": self.model,
            "seconds": round(self.seconds, 4),
            **self.extra,
        }


@dataclass
class LayerFailure:
    path: Path
    message: str


class Predictor:
    """Classify layers with any backend that maps uint8 patches to probabilities."""

    def __init__(
        self,
        backend,
        patch: int = 128,
        stride: int | None = None,
        workers: int = 2,
        batch_tiles: int = 256,
        model_name: str = "",
        camera: "CameraCalibration | None" = None,
    ):
        self.backend = backend
        self.patch = patch
        self.stride = stride or patch
        self.workers = max(1, workers)
        self.batch_tiles = batch_tiles
        self.model_name = model_name
        self.camera = camera
        self.ignore = camera.ignore_mask() if camera and camera.ignore else None

    def _load(self, item) -> tuple[Path, np.ndarray, TileGrid]:
        path, image = (Path(item), image_io.read(item)) if not isinstance(item, tuple) else item
        if self.camera:
            image = self.camera.warp(image)
        return path, image, tile(image, self.patch, self.stride)

    def predict(self, items: Iterable) -> Iterator[LayerResult | LayerFailure]:
        """Yield results in input order; items are paths or (name, array) pairs. Bad files yield a
        LayerFailure instead of stopping the run."""
        with ThreadPoolExecutor(self.workers) as pool:
            pending: deque = deque()
            source = iter(items)
            ready: list = []

            def refill() -> None:
                while len(pending) < self.workers + 2:
                    try:
                        item = next(source)
                    except StopIteration:
                        return
                    pending.append((item, time.perf_counter(), pool.submit(self._load, item)))

            refill()
            while pending or ready:
                tiles_ready = sum(len(r[2].patches) for r in ready if not isinstance(r, LayerFailure))
                if pending and tiles_ready < self.batch_tiles:
                    item, started, future = pending.popleft()
                    refill()
                    try:
                        path, image, grid = future.result()
                        ready.append((path, image, grid, started))
                    except SlmcnnError as exc:
                        ready.append(LayerFailure(Path(item[0] if isinstance(item, tuple) else item), str(exc)))
                    continue
                yield from self._run(ready)
                ready = []

    def _run(self, ready: list) -> Iterator[LayerResult | LayerFailure]:
        layers = [r for r in ready if not isinstance(r, LayerFailure)]
        probs = self.backend.probabilities(np.concatenate([r[2].patches for r in layers])) if layers else None
        offset = 0
        for entry in ready:
            if isinstance(entry, LayerFailure):
                yield entry
                continue
            path, image, grid, started = entry
            n = len(grid.patches)
            layer_probs = probs[offset : offset + n]
            offset += n
            class_map = stitch_classes(grid, layer_probs)
            ignored = None
            extra = {"camera": self.camera.to_json()} if self.camera else {}
            if self.ignore is not None:
                class_map[self.ignore] = IGNORED_PIXEL
                ignored = tile_ignored(self.ignore, grid.ys, grid.xs, grid.patch)
                extra["ignored_tiles"] = int(ignored.sum())
            grid.patches = grid.patches[:0]  # the pixels are no longer needed; keep the geometry
            yield LayerResult(
                path,
                image,
                grid,
                layer_probs,
                class_map,
                time.perf_counter() - started,
                self.model_name,
                extra,
                ignored,
            )
