"""Whole-layer classification: decode and tile the next layers while the network runs on this batch.

A Predictor takes paths or arrays, batches the tiles of several layers into one network call, and
returns a LayerResult per layer with tile probabilities, a per-pixel class map and class fractions.
"""

import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from slmcnn import images as image_io
from slmcnn.backends import Backend, JudgedBackend
from slmcnn.camera import Camera, CameraCalibration, tile_ignored
from slmcnn.constants import CLASSES
from slmcnn.errors import SettingsError, SlmcnnError
from slmcnn.labels import NOT_A_CLASS, NOT_A_CLASS_PIXEL
from slmcnn.metrics import LayerScore
from slmcnn.tiles import TileGeometry, cut, geometry, stitch_classes, strips

QUEUED = 2  # finished batches waiting for the caller: enough to cover a slow write, bounded memory
MAX_AHEAD = 16  # layers decoded ahead at most (one batch of small photos)
LayerInput = str | Path | np.ndarray | tuple[str, np.ndarray]
"""A layer: an image file, an HxW(x3) array, or a (name, array) pair."""


@dataclass
class LayerResult:
    """Everything predicted for one layer photo."""

    path: Path  # the file, or the name given to an array
    image: np.ndarray  # the layer as classified (straightened when a camera calibration was used)
    grid: TileGeometry
    probabilities: np.ndarray  # (tiles, classes), row-major over the grid
    class_map: np.ndarray  # (H, W) uint8; NOT_A_CLASS_PIXEL where a calibration says to ignore
    seconds: float
    model: str = ""
    camera: CameraCalibration | None = None
    ignored: np.ndarray | None = None  # per tile, row-major: mostly in an ignored area
    anomaly: np.ndarray | None = None  # per tile, row-major: an extra score (e.g. a camera profile's)
    adaptation: Any = None  # adapt.Adaptation: the layer's place in its build's adaptation, when adapting
    fine: Any = None  # finemaps.FineMaps: the per-pixel maps class_map was drawn from (maps="fine")
    seen: Any = None  # what Predictor.prepare made of the image on the decoding pool (finemaps.Seen)
    grade: Any = None  # grading.LayerGrade: ok / minor / critical and why, given by the pipeline

    @property
    def tile_classes(self) -> np.ndarray:
        """Class index per tile (rows, cols); NOT_A_CLASS for ignored tiles, which never count."""
        classes = self.probabilities.argmax(1)
        if self.ignored is not None:
            classes = np.where(self.ignored, NOT_A_CLASS, classes)
        return classes.reshape(self.grid.shape)

    @cached_property
    def fractions(self) -> dict[str, float]:
        """Share of the (not ignored) bed per class (counted once: JSON, summary and monitor ask)."""
        counts = [np.count_nonzero(self.class_map == c) for c in range(len(CLASSES))]  # no int64 copy of the map
        total = max(sum(counts), 1)
        return {c: n / total for c, n in zip(CLASSES, counts)}

    def to_json(self) -> dict:
        rows, cols = self.grid.shape
        doc = {
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
        }
        if self.camera is not None:
            doc["camera"] = self.camera.to_json()
        if self.ignored is not None:
            doc["ignored_tiles"] = int(self.ignored.sum())
        if self.anomaly is not None:
            doc["anomaly"] = np.round(self.anomaly.reshape(rows, cols), 5).tolist()
        if self.adaptation is not None:
            doc["adaptation"] = self.adaptation.to_json()
        if self.fine is not None:
            doc["map"] = self.fine.to_json()
            doc["regions"] = [r.to_json() for r in self.fine.regions]
        if self.grade is not None:
            doc["grade"] = self.grade.to_json()
        return doc


@dataclass
class LayerOutcome:
    """What became of one layer: its result (None when it could not be read, then `error` says
    why), its score against a mask, its attribution heat map, and the files written for it."""

    path: Path
    result: LayerResult | None = None
    error: str | None = None
    score: LayerScore | None = None
    attribution: np.ndarray | None = None  # (H, W)
    files: dict[str, Path] = field(default_factory=dict)


@dataclass
class LayerFailure:
    path: Path
    message: str


def layer_inputs(items: LayerInput | Iterable[LayerInput]) -> Iterable[LayerInput]:
    """One layer or many: a single path or array is one layer, never a sequence of characters or rows.
    Each is checked as it comes: anything but a path, an array or a (name, array) pair is refused."""
    if isinstance(items, str | Path | np.ndarray | tuple):
        return [_checked(items, 0)]
    if not isinstance(items, Iterable):
        raise SettingsError(
            f"layers: expected a path, an array, a (name, array) pair or a list of them, got {items!r:.60}"
        )
    return (_checked(item, i) for i, item in enumerate(items))


def _checked(item, index: int) -> LayerInput:
    pair = (
        isinstance(item, tuple)
        and len(item) == 2
        and isinstance(item[0], str | Path)
        and isinstance(item[1], np.ndarray)
    )
    if not (isinstance(item, str | Path | np.ndarray) or pair):
        raise SettingsError(
            f"layer {index + 1}: expected a file path, an image array or a (name, array) pair, got {type(item).__name__}"
        )
    return item


def layer_name(item: LayerInput, index: int) -> Path:
    """The path of a file, the name of a (name, array) pair, or array-<index>."""
    if isinstance(item, tuple):
        return Path(item[0])
    if isinstance(item, np.ndarray):
        return Path(f"array-{index:05d}")
    return Path(item)


def classify_pixels(
    grid: TileGeometry, probabilities: np.ndarray, ignore: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The per-pixel class map of a layer's tiles, NOT_A_CLASS_PIXEL where `ignore` (an HxW mask)
    says so, and which tiles are ignored (None without a mask)."""
    class_map = stitch_classes(grid, probabilities)
    if ignore is None:
        return class_map, None
    class_map[ignore] = NOT_A_CLASS_PIXEL
    return class_map, tile_ignored(ignore, grid.ys, grid.xs, grid.patch)


class Predictor:
    """Classify layers with any Backend."""

    def __init__(
        self,
        backend: Backend,
        patch: int = 128,
        stride: int | None = None,
        workers: int = 2,
        batch_tiles: int = 256,
        model_name: str = "",
        camera: Camera | CameraCalibration | None = None,
    ):
        """`camera`: the job's Camera (its geometry straightens each frame), or a geometry alone."""
        camera = camera.geometry if isinstance(camera, Camera) else camera
        self.backend = backend
        self.patch = patch
        self.stride = stride or patch
        self.workers = max(1, workers)
        self.batch_tiles = batch_tiles
        self.model_name = model_name
        self.camera = camera
        self.ignore = camera.ignore_mask() if camera and camera.ignore else None
        # a backend that decides a whole layer at a time (a camera profile's) gets each layer's
        # probabilities before they are stitched, and gives the tiles' anomaly back
        self.judged = backend if isinstance(backend, JudgedBackend) else None
        # work on each image that need not wait for the caller (the fine maps' texture and its
        # search), done on the decoding pool with the decoding (a photo cut in strips: in the
        # network thread): it overlaps the network's and the caller's work on the layers before
        self.prepare: Callable[[np.ndarray], Any] | None = None

    def _load(self, item: LayerInput, index: int) -> tuple[Path, np.ndarray, TileGeometry, np.ndarray | None, Any]:
        """Read a layer, cut its tiles and `prepare` it; a photo of more than `batch_tiles` tiles is
        cut later, in strips of tile rows (`strips`), so that only one strip of patches is ever in memory."""
        path = layer_name(item, index)
        if isinstance(item, tuple | np.ndarray):
            image = image_io.as_rgb(np.asarray(item[1] if isinstance(item, tuple) else item), str(path))
        else:
            image = image_io.read(item)
        if self.camera:
            image = self.camera.warp(image)
        where = geometry(image.shape[0], image.shape[1], self.patch, self.stride)
        patches = cut(image, where) if where.count <= self.batch_tiles else None
        # a photo cut in strips is prepared in the network thread: decoding runs several layers
        # ahead, and a big photo's texture is large (an 8000 px layer's: 768 MB)
        ahead = self.prepare is not None and patches is not None
        return path, image, where, patches, self.prepare(image) if ahead else None

    def warm_up(self) -> None:
        """Classify one blank layer: a backend's first call (memory, kernels) is paid now, not by the
        first real layer. A backend that knows its camera's frame size warms up on such a frame."""
        side = self.patch if self.camera is None else max(self.patch, self.camera.size)
        height, width = (self.judged and self.judged.frame_shape) or (side, side)
        list(self.predict([("warm-up", np.zeros((height, width, 3), np.uint8))]))
        if self.judged is not None:  # the blank frame is no layer of the build
            self.judged.new_build()

    def predict(self, items: LayerInput | Iterable[LayerInput]) -> Iterator[LayerResult | LayerFailure]:
        """Yield results in input order. Bad files yield a LayerFailure instead of stopping the run.
        Three stages overlap across layers: `workers` threads decode (and `prepare`) the next layers,
        one thread runs the network (and stitches), the caller's thread takes each layer on (scores,
        writes); at most
        QUEUED batches wait between the last two, so the network never waits for the writing."""
        source = enumerate(layer_inputs(items))
        done: queue.Queue = queue.Queue(QUEUED)
        stop = threading.Event()
        network = threading.Thread(target=self._network, args=(source, done, stop), name="slmcnn-network", daemon=True)
        network.start()
        try:
            while (batch := done.get()) is not None:
                if isinstance(batch, BaseException):
                    raise batch
                yield from batch
        finally:  # the caller stopped early or failed: the network thread ends after its batch
            stop.set()
            while network.is_alive():
                with contextlib.suppress(queue.Empty):
                    done.get(timeout=0.05)
            network.join()

    def _network(self, source: Iterator, done: queue.Queue, stop: threading.Event) -> None:
        """The network thread: batches of finished layers into `done`, then None (or what it raised)."""

        def put(item) -> bool:
            while not stop.is_set():
                with contextlib.suppress(queue.Full):
                    done.put(item, timeout=0.05)
                    return True
            return False

        try:
            for batch in self._batches(source):
                if not put(batch):
                    return
            put(None)
        except BaseException as exc:  # the caller raises it, in its own thread
            put(exc)

    def _batches(self, source: Iterator) -> Iterator[list[LayerResult | LayerFailure]]:
        """Decode ahead on the pool, a batch of about `batch_tiles` tiles per network call."""
        with ThreadPoolExecutor(self.workers, thread_name_prefix="slmcnn-decode") as pool:
            pending: deque = deque()
            ready: list = []
            per_batch = 1  # layers in a batch, from the last layer's tiles: decoding keeps a batch ahead

            def refill() -> None:
                while len(pending) < self.workers + 1 + per_batch:
                    try:
                        index, item = next(source)
                    except StopIteration:
                        return
                    pending.append((layer_name(item, index), time.perf_counter(), pool.submit(self._load, item, index)))

            refill()
            while pending or ready:
                tiles_ready = sum(r[2].count for r in ready if not isinstance(r, LayerFailure))
                if pending and tiles_ready < self.batch_tiles:
                    name, started, future = pending.popleft()
                    refill()
                    try:
                        ready.append((*future.result(), started))
                        per_batch = min(max(self.batch_tiles // max(ready[-1][2].count, 1), 1), MAX_AHEAD)
                    except SlmcnnError as exc:
                        ready.append(LayerFailure(name, str(exc)))
                    continue
                yield list(self._run(ready))
                ready = []

    def _run(self, ready: list) -> Iterator[LayerResult | LayerFailure]:
        cut_now = [r[3] for r in ready if not isinstance(r, LayerFailure) and r[3] is not None]
        probs = self.backend.probabilities(np.concatenate(cut_now)) if cut_now else None
        offset = 0
        for entry in ready:
            if isinstance(entry, LayerFailure):
                yield entry
                continue
            path, image, where, patches, seen, started = entry
            if patches is None:
                parts = strips(image, where, self.batch_tiles)
                layer_probs = np.concatenate([self.backend.probabilities(p) for p in parts])
            else:
                layer_probs = probs[offset : offset + len(patches)]
                offset += len(patches)
            anomaly = adaptation = None
            if self.judged is not None:
                layer_probs, anomaly, adaptation = self.judged.finish_layer(layer_probs, where, str(path))
            class_map, ignored = classify_pixels(where, layer_probs, self.ignore)
            result = LayerResult(
                path,
                image,
                where,
                layer_probs,
                class_map,
                time.perf_counter() - started,
                self.model_name,
                self.camera,
                ignored,
                anomaly,
                adaptation,
            )
            result.seen = self.prepare(image) if seen is None and self.prepare is not None else seen
            yield result
