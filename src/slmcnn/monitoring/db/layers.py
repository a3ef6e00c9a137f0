"""The store's layers and their tiles as the report and the app read them: a listing is one query
(or one per CHUNK layers), never one per layer."""

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine

from slmcnn.constants import CLASSES
from slmcnn.monitoring.db.records import FileStamp, StoredFile, StoredLayer, TileGrid
from slmcnn.monitoring.schema import PROBABILITY_COLUMNS, builds, layers, tiles
from slmcnn.predict import LayerResult
from slmcnn.tiles import TileGeometry

CHUNK = 500  # layers (or builds) per query where their ids are listed (SQLite allows 999 parameters in old builds)


def chunks(ids: list[int]) -> Iterable[list[int]]:
    return (ids[start : start + CHUNK] for start in range(0, len(ids), CHUNK))


def stored_layer(r) -> StoredLayer:
    fractions = {"Powder": r.powder, "Object": r.object, "Error": r.error}
    geometry = json.loads(r.geometry) if r.geometry else None
    return StoredLayer(
        r.id,
        r.number,
        r.file,
        r.path,
        r.status,
        r.message,
        fractions,
        geometry,
        r.overlay,
        r.digest,
        r.seconds,
        r.grade,
    )


def geometry_of(layer: StoredLayer) -> TileGeometry:
    return TileGeometry.from_json(layer.geometry)


class LayerQueries:
    """The layers and tiles of a `Database`."""

    engine: Engine

    def layers(self, build_id: int) -> list[StoredLayer]:
        """A build's layers, by number."""
        return self.layers_of([build_id])[build_id]

    def layers_of(self, build_ids: list[int]) -> dict[int, list[StoredLayer]]:
        """The layers of several builds, each by number, in one query per CHUNK builds (the report's)."""
        columns = [c for c in layers.columns if c.name != "thumbnail"]
        found: dict[int, list[StoredLayer]] = {build_id: [] for build_id in build_ids}
        with self.engine.connect() as conn:
            for part in chunks(list(build_ids)):
                query = select(*columns).where(layers.c.build_id.in_(part)).order_by(layers.c.number, layers.c.id)
                for r in conn.execute(query):
                    found[r.build_id].append(stored_layer(r))
        return found

    def grades(self, build_id: int) -> dict[int, str]:
        """The grade of each graded layer of a build, by layer number (layers.grade)."""
        query = select(layers.c.number, layers.c.grade).where(
            layers.c.build_id == build_id, layers.c.grade.is_not(None)
        )
        with self.engine.connect() as conn:
            return {r.number: r.grade for r in conn.execute(query)}

    def folder_grades(self, watch_dir: str, machine: str) -> dict[int, dict[int, str]]:
        """The graded layers of every build of a folder on a machine: build id -> {number: grade}."""
        query = (
            select(builds.c.id, layers.c.number, layers.c.grade)
            .outerjoin(layers, (layers.c.build_id == builds.c.id) & layers.c.grade.is_not(None))
            .where(builds.c.watch_dir == watch_dir, builds.c.machine == machine)
        )
        found: dict[int, dict[int, str]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(query):
                graded = found.setdefault(r.id, {})
                if r.grade is not None:
                    graded[r.number] = r.grade
        return found

    def stored_files(self, watch_dir: str, machine: str) -> dict[str, list[StoredFile]]:
        """Every file stored for any build of this folder on this machine, by name."""
        query = (
            select(layers.c.file, layers.c.build_id, layers.c.status, layers.c.size, layers.c.mtime, layers.c.digest)
            .join(builds, builds.c.id == layers.c.build_id)
            .where(builds.c.watch_dir == watch_dir, builds.c.machine == machine)
        )
        found: dict[str, list[StoredFile]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(query):
                stamp = FileStamp(r.size, r.mtime, r.digest or "") if r.size is not None else None
                found.setdefault(r.file, []).append(StoredFile(r.file, r.build_id, r.status, stamp))
        return found

    def thumbnail(self, layer_id: int) -> bytes | None:
        """The small JPEG of a stored layer's photo as it was classified."""
        with self.engine.connect() as conn:
            return conn.execute(select(layers.c.thumbnail).where(layers.c.id == layer_id)).scalar()

    def tile_grids(self, layer_ids: list[int]) -> dict[int, TileGrid]:
        """The stored tiles of many layers, one query per CHUNK layers; a layer without tiles (one an
        slmcnn 0.1 stored) is left out."""
        probabilities = [tiles.c[PROBABILITY_COLUMNS[c]] for c in CLASSES]
        columns = [tiles.c.layer_id, tiles.c.row, tiles.c.col, tiles.c.cls, *probabilities, tiles.c.anomaly]
        cells: dict[int, list] = {}
        with self.engine.connect() as conn:
            for part in chunks(list(layer_ids)):
                query = select(*columns).where(tiles.c.layer_id.in_(part))
                for r in conn.execute(query.order_by(tiles.c.layer_id, tiles.c.row, tiles.c.col)):
                    cells.setdefault(r[0], []).append(r[1:])
        return {layer_id: _grid(rows) for layer_id, rows in cells.items()}

    def tile_grid(self, layer_id: int) -> tuple[np.ndarray, np.ndarray]:
        """A layer's stored tile classes (rows, cols) and probabilities (rows*cols, classes)."""
        grid = self.tile_grids([layer_id])[layer_id]
        return grid.classes, grid.probabilities

    def layer_result(self, stored: StoredLayer) -> LayerResult:
        """A stored layer back as the LayerResult it was: its tiles, probabilities, anomaly, class map
        and calibration; its image is the kept thumbnail at the layer's size (blank without one)."""
        import cv2

        from slmcnn.camera import CameraCalibration
        from slmcnn.predict import classify_pixels

        grid = geometry_of(stored)
        tile_grid = self.tile_grids([stored.id])[stored.id]
        doc = (stored.geometry or {}).get("camera")
        camera = CameraCalibration(**doc) if doc else None
        ignore = camera.ignore_mask() if camera is not None and camera.ignore else None
        class_map, ignored = classify_pixels(grid, tile_grid.probabilities, ignore)
        thumbnail = self.thumbnail(stored.id)
        image = np.zeros((grid.height, grid.width, 3), np.uint8)
        if thumbnail:
            small = cv2.imdecode(np.frombuffer(thumbnail, np.uint8), cv2.IMREAD_COLOR)
            image = cv2.cvtColor(cv2.resize(small, (grid.width, grid.height)), cv2.COLOR_BGR2RGB)
        seconds = stored.seconds or 0.0
        path = Path(stored.path or stored.file)
        result = LayerResult(path, image, grid, tile_grid.probabilities, class_map, seconds)
        result.camera, result.ignored, result.anomaly = camera, ignored, tile_grid.anomaly
        return result


def _grid(cells: list) -> TileGrid:
    """One layer's tile rows (row, col, cls, probabilities..., anomaly) as arrays."""
    shape = (max(c[0] for c in cells) + 1, max(c[1] for c in cells) + 1)
    classes = np.array([c[2] for c in cells], np.int64).reshape(shape)
    probabilities = np.array([c[3 : 3 + len(CLASSES)] for c in cells], np.float32)
    anomaly = [c[-1] for c in cells]
    scored = None if any(v is None for v in anomaly) else np.array(anomaly, np.float32)
    return TileGrid(classes, probabilities, scored)
