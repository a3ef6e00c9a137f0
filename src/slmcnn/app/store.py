"""The app's own database (SQLite): every tile label with who and when, alert reviews, the model
made current. Each change is committed at once, so nothing is lost when the browser or the server
stops; `label_log` keeps every change, `labels` the latest per tile."""

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from slmcnn.errors import SettingsError, SlmcnnError

SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
  set_key TEXT NOT NULL, layer TEXT NOT NULL, row INTEGER NOT NULL, col INTEGER NOT NULL,
  cls INTEGER, checked INTEGER NOT NULL DEFAULT 0, who TEXT, at REAL,
  build TEXT, number TEXT, image TEXT, geometry TEXT, camera TEXT,
  PRIMARY KEY (set_key, layer, row, col)
);
CREATE TABLE IF NOT EXISTS label_log (
  id INTEGER PRIMARY KEY, set_key TEXT, layer TEXT, row INTEGER, col INTEGER,
  cls INTEGER, checked INTEGER, who TEXT, at REAL, why TEXT
);
CREATE TABLE IF NOT EXISTS reviews (
  source TEXT NOT NULL, alert_id INTEGER NOT NULL, verdict TEXT NOT NULL, who TEXT, at REAL,
  undo TEXT,
  PRIMARY KEY (source, alert_id)
);
CREATE TABLE IF NOT EXISTS models (id INTEGER PRIMARY KEY, path TEXT NOT NULL, source TEXT, who TEXT, at REAL);
"""


@dataclass(frozen=True)
class LayerRef:
    """Where a label's tile comes from: enough to cut it again at export time."""

    set_key: str
    layer: str  # the layer's file name
    build: str  # the build (or folder) name, for the split file
    number: str  # the layer number (or file stem), for the split file
    image: str  # the photo
    geometry: dict  # TileGeometry.to_json()
    camera: dict | None = None  # calibration that straightens the photo
    digest: str | None = None  # SHA-1 of the photo the tiles were classified on (a stored layer's)


@dataclass
class Label:
    ref: LayerRef
    row: int
    col: int
    cls: int | None
    checked: bool
    who: str
    at: float


class StoreBusy(SlmcnnError):
    """The labels database is locked by another program just now: nothing was stored; try again."""


class LabelStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), timeout=5.0, check_same_thread=False, isolation_level=None)
            tables = {row[0] for row in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "labels" not in tables:  # never add ours to another program's database
                self._conn.close()
                raise SettingsError(
                    f"{self.path} is another program's database (tables {', '.join(sorted(tables)[:4])}); "
                    "give the app's labels database or a new file"
                )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(SCHEMA)
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(labels)")}
            if "digest" not in columns:  # a labels database of an earlier slmcnn
                self._conn.execute("ALTER TABLE labels ADD COLUMN digest TEXT")
            if "undo" not in {row[1] for row in self._conn.execute("PRAGMA table_info(reviews)")}:
                self._conn.execute("ALTER TABLE reviews ADD COLUMN undo TEXT")
        except (sqlite3.Error, OSError) as exc:
            raise SettingsError(f"{self.path}: not a usable labels database ({exc})") from None
        self._lock = threading.Lock()

    def _run(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._transaction(begin=False) as c:
            return c.execute(sql, args).fetchall()

    @contextmanager
    def _transaction(self, begin: bool = True):
        """The connection, in a transaction when `begin`: committed at the end, rolled back on any
        error, so one locked write never leaves the connection inside a transaction."""
        with self._lock:
            c = self._conn
            try:
                if begin:
                    c.execute("BEGIN IMMEDIATE")
                yield c
                if begin:
                    c.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                if "locked" in str(exc) or "busy" in str(exc):
                    raise StoreBusy(
                        f"the labels database {self.path.name} is busy (another program holds it); nothing was stored, try again"
                    ) from None
                raise
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise

    def set_label(
        self, ref: LayerRef, row: int, col: int, cls: int | None, checked: bool, who: str, why: str = "label"
    ) -> None:
        """Store one tile's label (None clears it) in one transaction, with its log entry."""
        with self._transaction() as c:
            self._write_label(c, ref, row, col, cls, checked, who, why)

    def restore_labels(self, ref: LayerRef, undo: list, who: str, wrote: str) -> int:
        """Put back the labels a review wrote over (`undo`: [row, col, cls, checked] as they were
        before it, `wrote`: the review's `why`), in one transaction, on the tiles where the review's
        label still stands: a tile labelled since, by hand or otherwise, keeps that label. How many
        were put back."""
        restored = 0
        with self._transaction() as c:
            for row, col, cls, checked in undo:
                last = c.execute(
                    "SELECT why FROM label_log WHERE set_key=? AND layer=? AND row=? AND col=? ORDER BY id DESC LIMIT 1",
                    (ref.set_key, ref.layer, row, col),
                ).fetchone()
                if last is not None and last[0] == wrote:
                    self._write_label(c, ref, row, col, cls, checked, who, "undo review")
                    restored += 1
        return restored

    @staticmethod
    def _write_label(c, ref: LayerRef, row: int, col: int, cls: int | None, checked: bool, who: str, why: str) -> None:
        at = time.time()
        camera = json.dumps(ref.camera) if ref.camera else None
        c.execute(
            "INSERT OR REPLACE INTO labels (set_key, layer, row, col, cls, checked, who, at, build, number, image, "
            "geometry, camera, digest) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (ref.set_key, ref.layer, row, col, cls, int(checked), who, at, ref.build, ref.number, ref.image,
             json.dumps(ref.geometry), camera, ref.digest),
        )  # fmt: skip
        c.execute(
            "INSERT INTO label_log (set_key, layer, row, col, cls, checked, who, at, why) VALUES (?,?,?,?,?,?,?,?,?)",
            (ref.set_key, ref.layer, row, col, cls, int(checked), who, at, why),
        )

    def layer_labels(self, set_key: str, layer: str) -> dict[tuple[int, int], tuple[int | None, bool, str, float]]:
        rows = self._run(
            "SELECT row, col, cls, checked, who, at FROM labels WHERE set_key=? AND layer=?", (set_key, layer)
        )
        return {(r, c): (cls, bool(ch), who, at) for r, c, cls, ch, who, at in rows}

    def labelled_cells(self, set_key: str) -> dict[str, set[tuple[int, int]]]:
        """The tiles (row, col) with a class, by layer file, of a set, in one query."""
        found: dict[str, set[tuple[int, int]]] = {}
        rows = self._run("SELECT layer, row, col FROM labels WHERE set_key=? AND cls IS NOT NULL", (set_key,))
        for layer, row, col in rows:
            found.setdefault(layer, set()).add((row, col))
        return found

    def counts(self, set_key: str) -> dict[str, int]:
        """Labelled tiles per layer file of a set."""
        rows = self._run(
            "SELECT layer, count(*) FROM labels WHERE set_key=? AND cls IS NOT NULL GROUP BY layer", (set_key,)
        )
        return dict(rows)

    def labelled_per_set(self) -> dict[str, int]:
        """Labelled tiles per set, every set in one query (the start page lists them all)."""
        return dict(self._run("SELECT set_key, count(*) FROM labels WHERE cls IS NOT NULL GROUP BY set_key"))

    def labels(self) -> list[Label]:
        """Every tile that has a class, in a stable order."""
        rows = self._run(
            "SELECT set_key, layer, build, number, image, geometry, camera, digest, row, col, cls, checked, who, at "
            "FROM labels WHERE cls IS NOT NULL ORDER BY set_key, layer, row, col"
        )
        return [
            Label(LayerRef(k, layer, b, n, img, json.loads(g), json.loads(cam) if cam else None, d), r, c, cls, bool(ch), w, at)
            for k, layer, b, n, img, g, cam, d, r, c, cls, ch, w, at in rows
        ]  # fmt: skip

    def log_count(self) -> int:
        return self._run("SELECT count(*) FROM label_log")[0][0]

    def review(self, source: str, alert_id: int, verdict: str, who: str, undo: list | None = None) -> None:
        """Store a verdict; `undo` is what reverting it restores (the labels it wrote, as they were)."""
        self._run(
            "INSERT OR REPLACE INTO reviews (source, alert_id, verdict, who, at, undo) VALUES (?,?,?,?,?,?)",
            (source, alert_id, verdict, who, time.time(), json.dumps(undo or [])),
        )

    def unreview(self, source: str, alert_id: int) -> list | None:
        """Drop a verdict; what it wrote, to restore (None: there was no verdict)."""
        with self._transaction() as c:
            row = c.execute("SELECT undo FROM reviews WHERE source=? AND alert_id=?", (source, alert_id)).fetchone()
            c.execute("DELETE FROM reviews WHERE source=? AND alert_id=?", (source, alert_id))
        return None if row is None else json.loads(row[0] or "[]")

    def reviews(self, source: str) -> dict[int, tuple[str, str, float]]:
        rows = self._run("SELECT alert_id, verdict, who, at FROM reviews WHERE source=?", (source,))
        return {a: (v, w, t) for a, v, w, t in rows}

    def reviewed(self) -> dict[str, set[int]]:
        """The alerts with a verdict, by source, every source in one query."""
        found: dict[str, set[int]] = {}
        for source, alert_id in self._run("SELECT source, alert_id FROM reviews"):
            found.setdefault(source, set()).add(alert_id)
        return found

    def made_current(self, path: str, source: str, who: str) -> None:
        self._run("INSERT INTO models (path, source, who, at) VALUES (?,?,?,?)", (path, source, who, time.time()))

    def current_model(self) -> str | None:
        rows = self._run("SELECT path FROM models ORDER BY id DESC LIMIT 1")
        return rows[0][0] if rows else None

    def close(self) -> None:
        self._conn.close()
