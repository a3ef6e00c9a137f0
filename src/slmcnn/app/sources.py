"""What the app shows: sets of layers. A monitored build (its stored tiles, read through
monitoring.db) or a folder of photos (classified on demand with the current model). Every file the
app reads is reached from a set, never from a path in a request."""

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from slmcnn import images
from slmcnn.app.store import LayerRef
from slmcnn.camera import CameraCalibration
from slmcnn.errors import SlmcnnError
from slmcnn.monitoring.db import Database
from slmcnn.monitoring.db.layers import geometry_of
from slmcnn.monitoring.db.records import BuildOverview, BuildRow, FileStamp, StoredLayer, TileGrid
from slmcnn.outputs import layer_number, layer_order
from slmcnn.tiles import TileGeometry

log = logging.getLogger(__name__)


class NotFound(SlmcnnError):
    """A set, layer, tile or alert that does not exist (HTTP 404)."""


class PhotoChanged(SlmcnnError):
    """A stored layer whose photo file was replaced: its tiles cannot be cut from it (HTTP 409)."""


@dataclass
class LayerData:
    """One layer as the layer view shows it."""

    ref: LayerRef
    index: int
    geometry: TileGeometry
    probabilities: np.ndarray  # (tiles, classes), row-major
    classes: np.ndarray  # (rows, cols); NOT_A_CLASS where ignored
    anomaly: np.ndarray | None  # (tiles,)
    camera: CameraCalibration | None
    photo_changed: bool = False  # the file is not the photo this result came from any more
    thumbnail: bytes | None = None  # what was kept of that photo (a stored layer's)


def straightened(path: str | Path, camera: CameraCalibration | None) -> np.ndarray:
    """The photo as the network saw it: 8-bit RGB, straightened when calibrated."""
    image = images.read(path)
    return images.to_uint8(camera.warp(image) if camera is not None else image)


class Cache:
    """A small thread-safe LRU of computed things (straightened photos, predictions, JPEGs)."""

    def __init__(self, size: int = 24):
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key, make):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


LIVE_SECONDS = 120.0  # where a monitor's lock cannot be seen: a layer stored this recently means one is writing


class BuildSet:
    """A build a monitor stored: its done layers, tiles, anomaly scores and alerts."""

    kind = "build"

    def __init__(self, id: str, db: Database, source: str, build_id: int, name: str, row: BuildRow | None = None):
        self.id, self.db, self.source, self.build_id, self.name, self.row = id, db, source, build_id, name, row
        self.key = f"{source}#{build_id}"
        self._stored_layers: list[StoredLayer] | None = None

    def stored(self) -> list[StoredLayer]:
        """The build's done layers, read once per set (Workspace.sets makes the sets anew for each request)."""
        if self._stored_layers is None:
            self._stored_layers = [layer for layer in self.db.layers(self.build_id) if layer.status == "done"]
        return self._stored_layers

    def count(self) -> int:
        return len(self.stored())

    def _stored(self, index: int) -> StoredLayer:
        layers = self.stored()
        if not 0 <= index < len(layers):
            raise NotFound(f"{self.name} has no layer {index}")
        return layers[index]

    def judgement(self, index: int) -> tuple[str | None, str | None, list[dict]]:
        """A stored layer's grade, its alert's message and its regions as stored (tile regions, and
        the fine map's defects: type, box in px and mm, text); None, None, [] for an ungraded layer."""
        stored = self._stored(index)
        alert = next((a.alert for a in self.db.alert_rows(self.build_id) if a.layer_id == stored.id), None)
        return stored.grade, alert.message if alert else None, alert.regions if alert else []

    def layer(self, index: int, workspace=None) -> LayerData:
        """A stored layer as the monitor stored it: its tiles' classes (NOT_A_CLASS where ignored),
        probabilities and anomaly, read in one query; its photo is not decoded."""
        data = self.layers([index])[0]
        if data.photo_changed:
            data.thumbnail = self.db.thumbnail(self._stored(index).id)
        return data

    def layers(self, indices: list[int], workspace=None) -> list[LayerData]:
        """Several stored layers (Workspace.proposals'), their tiles read in one query per CHUNK
        layers; a layer whose photo was replaced comes without the kept thumbnail (`layer` reads it)."""
        stored = [self._stored(index) for index in indices]
        tiles = self.db.tile_grids([layer.id for layer in stored])
        return [self._data(index, layer, tiles[layer.id]) for index, layer in zip(indices, stored, strict=True)]

    def _data(self, index: int, stored: StoredLayer, tiles: TileGrid) -> LayerData:
        grid = geometry_of(stored)
        doc = stored.geometry.get("camera")
        camera = CameraCalibration(**doc) if doc else None
        camera_doc = camera.to_json() if camera is not None else None
        number = str(stored.number) if stored.number is not None else Path(stored.file).stem
        ref = LayerRef(
            self.key, stored.file, self.name, number, stored.path or "", grid.to_json(), camera_doc, stored.digest
        )
        changed = photo_changed(stored)
        return LayerData(ref, index, grid, tiles.probabilities, tiles.classes, tiles.anomaly, camera, changed)


def overviews(sets: list) -> dict[str, tuple[BuildOverview, bool]]:
    """Each build set's overview (Database.overviews) and whether a monitor writes it now (live),
    read with three queries per database whatever the number of its builds, and one look at the
    monitors' locks."""
    found: dict[str, tuple[BuildOverview, bool]] = {}
    groups: dict[int, list[BuildSet]] = {}
    for s in sets:
        if isinstance(s, BuildSet):
            groups.setdefault(id(s.db), []).append(s)
    for group in groups.values():
        db = group[0].db
        seen, latest = db.overviews([s.build_id for s in group]), db.latest_builds()
        folder = {s.id: (s.row.watch_dir, s.row.machine) for s in group if s.row is not None and s.build_id in latest}
        running = db.monitors_running(sorted(set(folder.values())))
        for s in group:
            last = seen[s.build_id].last
            found[s.id] = (seen[s.build_id], s.id in folder and live(running[folder[s.id]], last))
    return found


def live(running: bool | None, last: float | None) -> bool:
    """Whether a monitor writes a folder's latest build now: its lock is held (`running`); where
    the lock cannot be seen, the build's last layer (`last`) is recent."""
    return running if running is not None else last is not None and time.time() - last < LIVE_SECONDS


def photo_changed(stored: StoredLayer | LayerRef) -> bool:
    """True when the file a layer was classified from is gone or holds another photo now (a later
    build wrote the same name): its tiles must not be labelled, explained or exported from it."""
    path = stored.path if isinstance(stored, StoredLayer) else stored.image
    if not stored.digest or not path:
        return False
    try:
        stat = Path(path).stat()
    except OSError:
        return True
    return _digest(path, stat.st_size, stat.st_mtime_ns) != stored.digest


@lru_cache(maxsize=1024)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return FileStamp.of(Path(path)).digest


class FolderSet:
    """A folder of layer photos opened to label: classified with the app's model when first shown."""

    kind = "folder"

    def __init__(self, id: str, folder: Path, camera: CameraCalibration | None = None):
        self.id, self.folder, self.camera = id, folder, camera
        self.name = folder.name if folder.name not in ("layers", "") else folder.parent.name
        self.key = str(folder)

    def files(self) -> list[Path]:
        found = [p for p in images.list_images([self.folder]) if p.parent == self.folder]
        return sorted(found, key=layer_order)

    def count(self) -> int:
        return len(self.files())

    def layers(self, indices: list[int], workspace) -> list[LayerData]:
        """The layers at `indices` whose photos can be read and classified; one that cannot is left
        out with a warning, not the whole list refused."""
        found = []
        for index in indices:
            try:
                found.append(self.layer(index, workspace))
            except SlmcnnError as exc:
                log.warning("layer %d of %s left out: %s", index, self.name, exc)
        return found

    def layer(self, index: int, workspace) -> LayerData:
        files = self.files()
        if not 0 <= index < len(files):
            raise NotFound(f"{self.name} has no layer {index}")
        path = files[index]
        result, anomaly = workspace.predict(path, self.camera)
        number = layer_number(path)
        camera_doc = self.camera.to_json() if self.camera else None
        ref = LayerRef(
            self.key, path.name, self.name, str(number) if number is not None else path.stem, str(path),
            result.grid.to_json(), camera_doc,
        )  # fmt: skip
        return LayerData(ref, index, result.grid, result.probabilities, result.tile_classes, anomaly, self.camera)


def tile_patch(image: np.ndarray, geometry: TileGeometry, row: int, col: int) -> np.ndarray:
    """One tile of a straightened layer."""
    if not (0 <= row < geometry.shape[0] and 0 <= col < geometry.shape[1]):
        raise NotFound(f"no tile ({row}, {col}) in a {geometry.shape[0]}x{geometry.shape[1]} grid")
    y, x, p = int(geometry.ys[row]), int(geometry.xs[col]), geometry.patch
    return image[y : y + p, x : x + p]
