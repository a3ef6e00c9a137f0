"""One build as the monitor writes it: a finished layer with its grade, tiles and alert in one
transaction, a failed layer, the alerts raised."""

import json
import time
from pathlib import Path

import numpy as np
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from slmcnn.constants import CLASSES
from slmcnn.files import storable
from slmcnn.grading import LayerGrade
from slmcnn.monitoring.alerts import Alert
from slmcnn.monitoring.db.records import BuildRow, FileStamp
from slmcnn.monitoring.schema import PROBABILITY_COLUMNS, alerts, layers, tiles
from slmcnn.predict import LayerResult
from slmcnn.render import thumbnail_jpeg


class BuildHandle:
    """One build: what the monitor reads and writes while following it."""

    def __init__(self, db, row: BuildRow):
        self.db, self.row = db, row

    @property
    def id(self) -> int:
        return self.row.id

    def _scalar(self, query):
        with self.db.engine.connect() as conn:
            return conn.execute(query).scalar()

    def first_number(self) -> int | None:
        return self._scalar(select(func.min(layers.c.number)).where(layers.c.build_id == self.id))

    def next_number(self) -> int:
        last = self._scalar(select(func.max(layers.c.number)).where(layers.c.build_id == self.id))
        return (last or 0) + 1

    def history(self, count: int) -> list[np.ndarray]:
        """Tile classes of the last `count` finished layers before now, oldest first (a layer that
        an slmcnn 0.1 stored without tiles has none to give)."""
        if count < 1:
            return []
        has_tiles = select(tiles.c.layer_id).where(tiles.c.layer_id == layers.c.id).exists()
        query = (
            select(layers.c.id)
            .where(layers.c.build_id == self.id, layers.c.status == "done", has_tiles)
            .order_by(layers.c.number.desc())
            .limit(count)
        )
        with self.db.engine.connect() as conn:
            ids = list(reversed(conn.execute(query).scalars().all()))
        grids = self.db.tile_grids(ids)
        return [grids[layer_id].classes for layer_id in ids]

    def add_layer(
        self,
        number: int,
        result: LayerResult,
        grade: LayerGrade,
        alert: Alert | None,
        overlay: Path | None,
        stamp: FileStamp,
    ) -> int | None:
        """Store a finished layer, its grade, its tiles and its alert in one transaction; the alert's id.
        A photo of a stored layer taken again replaces that layer's row and tiles (its earlier alerts
        are kept, with the layer)."""
        file = storable(result.path.name)
        row = self._layer_row(number, result, grade, overlay, stamp) | {"file": file}
        with self.db.engine.begin() as conn:
            retaken = conn.execute(
                select(layers.c.id).where(layers.c.build_id == self.id, layers.c.file == file)
            ).scalar()
            if retaken is None:
                layer_id = conn.execute(insert(layers).values(**row)).inserted_primary_key[0]
            else:
                layer_id = retaken
                conn.execute(delete(tiles).where(tiles.c.layer_id == retaken))
                conn.execute(update(layers).where(layers.c.id == retaken).values(**row))
            conn.execute(insert(tiles), tile_rows(layer_id, result))
            return self._add_alert(conn, layer_id, alert) if alert is not None else None

    def _layer_row(
        self, number: int, result: LayerResult, grade: LayerGrade, overlay: Path | None, stamp: FileStamp
    ) -> dict:
        f = result.fractions
        geometry = result.grid.to_json()
        if result.camera is not None:
            geometry["camera"] = result.camera.to_json()
        return dict(
            build_id=self.id,
            number=number,
            path=storable(str(result.path)),
            status="done",
            processed=time.time(),
            seconds=result.seconds,
            powder=f["Powder"],
            object=f["Object"],
            error=f["Error"],
            geometry=json.dumps(geometry),
            overlay=str(overlay) if overlay else None,
            size=stamp.size,
            mtime=stamp.mtime,
            digest=stamp.digest,
            thumbnail=thumbnail_jpeg(result.image),
            grade=grade.grade,
        )

    def _add_alert(self, conn: Connection, layer_id: int, alert: Alert) -> int:
        values = {k: getattr(alert, k) for k in ("layer", "file", "rule", "message", "value", "grade", "overlay")}
        values.update(
            regions=json.dumps(alert.regions),
            build_id=self.id,
            layer_id=layer_id,
            created=time.time(),
            raised=0,  # never the column's default: a migrated 0.1 database had 1 there
        )
        return conn.execute(insert(alerts).values(**values)).inserted_primary_key[0]

    def add_failed(self, file: str, number: int | None, message: str, stamp: FileStamp | None) -> None:
        values = {"build_id": self.id, "number": number, "file": file, "status": "failed", "message": storable(message)}
        if stamp is not None:
            values.update(size=stamp.size, mtime=stamp.mtime, digest=stamp.digest)
        with self.db.engine.begin() as conn:
            conn.execute(insert(layers).values(**values, processed=time.time()))

    def forget_failed(self, file: str) -> None:
        """Drop a failed layer's row, so that a rewritten file is tried again in this build."""
        with self.db.engine.begin() as conn:
            conn.execute(
                delete(layers).where(layers.c.build_id == self.id, layers.c.file == file, layers.c.status == "failed")
            )

    def mark_raised(self, alert_ids: list[int]) -> None:
        if alert_ids:
            with self.db.engine.begin() as conn:
                conn.execute(update(alerts).where(alerts.c.id.in_(alert_ids)).values(raised=1))


def tile_rows(layer_id: int, result: LayerResult) -> list[dict]:
    """A layer's tiles as rows of the tiles table, row-major."""
    classes, probs, cols = result.tile_classes.ravel(), result.probabilities, result.grid.shape[1]
    return [
        {
            "layer_id": layer_id,
            "row": i // cols,
            "col": i % cols,
            "cls": int(classes[i]),
            **{PROBABILITY_COLUMNS[c]: float(probs[i, k]) for k, c in enumerate(CLASSES)},
            "anomaly": float(result.anomaly[i]) if result.anomaly is not None else None,
        }
        for i in range(len(classes))
    ]
