"""The monitor's store: one handle per build, and the queries the report and the app read (the
tables are in schema.py, the one-monitor lock in lock.py).

A path means an SQLite file; anything with '://' is an SQLAlchemy URL (e.g. PostgreSQL). Each
finished layer is one transaction with its tiles and alerts. A monitor's builds are keyed by its
machine and folder (computers of a shop name their camera folders alike); a folder may hold
several builds one after another; each stored layer keeps the size, modification time and SHA-1
of its file, so a rewritten file is recognised.
"""

import contextlib
import hashlib
import importlib.util
import json
import logging
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import (
    create_engine,
    delete,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from slmcnn.constants import CLASSES
from slmcnn.errors import DatabaseError
from slmcnn.files import describe, resolved, storable
from slmcnn.grading import LayerGrade
from slmcnn.monitoring.alerts import Alert
from slmcnn.monitoring.lock import MonitorLock, monitor_running
from slmcnn.monitoring.migrations import upgrade
from slmcnn.monitoring.schema import (
    PROBABILITY_COLUMNS,
    alerts,
    attempts,
    builds,
    layers,
    tiles,
)
from slmcnn.predict import LayerResult
from slmcnn.render import thumbnail_jpeg
from slmcnn.tiles import TileGeometry

log = logging.getLogger(__name__)
SQLITE_HEADER = b"SQLite format 3\x00"
DRIVERS = {"postgresql": ("psycopg", "postgresql+psycopg", "pip install 'slmcnn[postgres]'")}


def shown_url(db: str | Path) -> str:
    """The database as it may be printed: a URL without its password."""
    if "://" not in str(db):
        return str(db)
    try:
        return make_url(str(db)).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", str(db))


def database_url(db: str | Path, create: bool = True) -> str:
    """A path means an SQLite file; anything with '://' is an SQLAlchemy URL: sqlite:///FILE or
    postgresql://user@host/db (with the psycopg driver of `slmcnn[postgres]`). Anything else, a
    folder, a file that is not SQLite or a missing driver is a DatabaseError saying what to fix."""
    if "://" not in str(db):
        path = Path(db)
        if path.is_dir():
            raise DatabaseError(f"{path} is a folder; give an SQLite database file, e.g. {path / 'build.sqlite'}")
        if path.is_file() and path.stat().st_size and not _is_sqlite(path):
            raise DatabaseError(f"{path} is not an SQLite database; give the monitor's database or a new file name")
        if not path.is_file() and not create:
            raise DatabaseError(f"{path}: no such database")
        if not path.parent.is_dir():
            raise DatabaseError(f"{path}: no such folder {path.parent}")
        try:
            return f"sqlite:///{resolved(path)}"
        except OSError as exc:
            raise DatabaseError(describe(exc, path)) from None
    try:
        url = make_url(str(db))
    except (ArgumentError, ValueError):
        raise DatabaseError(f"{shown_url(db)} is not a database URL; use postgresql://user@host/db or a file") from None
    kind = {"postgres": "postgresql"}.get(url.get_backend_name(), url.get_backend_name())
    if kind == "sqlite":
        return database_url(url.database or "", create) if url.database else str(db)
    if kind not in DRIVERS:
        raise DatabaseError(
            f"{shown_url(db)}: unknown database kind {url.drivername!r}; use an SQLite file or postgresql://user@host/db"
        )
    module, default, install = DRIVERS[kind]
    if "+" not in url.drivername:
        url = url.set(drivername=default)
    if url.drivername == default and importlib.util.find_spec(module) is None:
        raise DatabaseError(f"{shown_url(db)}: the {kind} driver {module} is not installed; {install}")
    return url.render_as_string(hide_password=False)


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(16) == SQLITE_HEADER


@contextlib.contextmanager
def database_errors(db: str | Path) -> Iterator[None]:
    """Database errors (no server, wrong password, a full disk, a driver missing) as one DatabaseError."""
    try:
        yield
    except ImportError as exc:
        raise DatabaseError(
            f"{shown_url(db)}: {exc}; install that driver, or use postgresql:// with slmcnn[postgres]"
        ) from None
    except SQLAlchemyError as exc:
        first = (
            str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        )
        server = "://" in str(db) and not str(db).startswith("sqlite") and isinstance(exc, OperationalError)
        hint = "; check that the server runs and the URL's host, port, user, password and database" if server else ""
        raise DatabaseError(f"{shown_url(db)}: {first}{hint}") from None


def unavailable(exc: BaseException) -> bool:
    """The database is away for now, not broken, and waiting is the cure: an SQLite file that another
    program holds (locked, busy), a server restarting or out of reach (a lost or refused connection).
    A full disk under SQLite is not: the monitor stops and says so."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    if isinstance(exc.orig, sqlite3.Error):
        return any(word in str(exc.orig).lower() for word in ("locked", "busy"))
    return True


@dataclass(frozen=True)
class FileStamp:
    """What a layer file was when it was stored: a changed size or time with another SHA-1 is a new file."""

    size: int
    mtime: float
    digest: str = ""

    @classmethod
    def of(cls, path: Path, digest: bool = True) -> "FileStamp":
        """The file's size, time and SHA-1, read in blocks; a file larger than any image slmcnn
        reads (images.LIMITS, decoded) is not read at all: its size and time stand for its digest."""
        from slmcnn.images import LIMITS

        stat = path.stat()
        if not digest:
            return cls(stat.st_size, stat.st_mtime)
        if stat.st_size > LIMITS.max_bytes:
            return cls(stat.st_size, stat.st_mtime, f"unread:{stat.st_size}:{stat.st_mtime_ns}")
        with open(path, "rb") as handle:
            return cls(stat.st_size, stat.st_mtime, hashlib.file_digest(handle, "sha1").hexdigest())

    def same_stat(self, other: "FileStamp") -> bool:
        return self.size == other.size and abs(self.mtime - other.mtime) < 1e-6


@dataclass
class StoredFile:
    file: str
    build_id: int
    status: str
    stamp: FileStamp | None


@dataclass
class BuildRow:
    id: int
    watch_dir: str
    name: str
    model: str
    started: float
    machine: str = ""  # the printer or computer (monitor --machine); "" in builds of an slmcnn before it


@dataclass
class StoredLayer:
    """A layer as the monitor stored it."""

    id: int
    number: int | None
    file: str
    path: str | None
    status: str
    message: str | None
    fractions: dict[str, float]
    geometry: dict | None
    overlay: str | None
    digest: str | None = None  # SHA-1 of the photo when it was classified
    seconds: float | None = None  # how long it took to classify


@dataclass
class BuildOverview:
    """A build at a glance (the app's start page): its done layers' grades and the last one's time."""

    layers: int
    grades: dict[str, int]  # ok | minor | critical -> layers
    last: float | None  # when the last layer was stored (seconds since the epoch)


@dataclass
class StoredAlert:
    id: int
    layer_id: int
    alert: Alert
    created: float | None


class Database:
    """Builds, layers, tiles and alerts in one database."""

    def __init__(self, db: str | Path, create: bool = True):
        """Open (with `create`, make) a monitor's database; without `create` a database that lacks
        the monitor's tables is refused and left untouched, and so is, with it, an SQLite file of
        another program (tables, none of them the monitor's)."""
        self.source = db
        with database_errors(db):
            url = database_url(db, create)
            # a server's connections are checked before use: one that restarted is reconnected to
            self.engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
            tables = set(inspect(self.engine).get_table_names())
            if create and self.engine.dialect.name == "sqlite" and tables and "builds" not in tables:
                raise DatabaseError(
                    f"{shown_url(db)} is another program's database (tables {', '.join(sorted(tables)[:4])}); "
                    "give the monitor's database or a new file"
                )
            if not create:
                missing = {"builds", "layers", "tiles", "alerts"} - tables
                if missing:
                    raise DatabaseError(
                        f"{shown_url(db)} is not a monitor's database (no {', '.join(sorted(missing))} table)"
                    )
            upgrade(self.engine, shown_url(db))

    def lock(self, watch_dir: str, machine: str) -> MonitorLock:
        """Hold the one-monitor lock for `watch_dir` on `machine`, or raise DatabaseError when another has it."""
        with database_errors(self.source):
            return MonitorLock(self.engine, watch_dir, machine, shown_url(self.source))

    def begin_attempt(self, watch_dir: str, machine: str, file: str, stamp: FileStamp) -> int:
        """Note that classifying `file` starts; return how many earlier tries of this same file
        (size and time) never finished: a layer that kills the monitor is known on restart."""
        where = (attempts.c.machine == machine, attempts.c.watch_dir == watch_dir, attempts.c.file == file)
        with self.engine.begin() as conn:
            row = conn.execute(select(attempts).where(*where)).first()
            same = row is not None and row.size == stamp.size and abs(row.mtime - stamp.mtime) < 1e-6
            count = row.count if same else 0
            conn.execute(delete(attempts).where(*where))
            values = {"machine": machine, "watch_dir": watch_dir, "file": file}
            conn.execute(insert(attempts).values(**values, size=stamp.size, mtime=stamp.mtime, count=count + 1))
        return count

    def thumbnail(self, layer_id: int) -> bytes | None:
        """The small JPEG of a stored layer's photo as it was classified."""
        with self.engine.connect() as conn:
            return conn.execute(select(layers.c.thumbnail).where(layers.c.id == layer_id)).scalar()

    def end_attempt(self, watch_dir: str, machine: str, file: str) -> None:
        where = (attempts.c.machine == machine, attempts.c.watch_dir == watch_dir, attempts.c.file == file)
        with self.engine.begin() as conn:
            conn.execute(delete(attempts).where(*where))

    def builds(self, watch_dir: str | None = None, machine: str | None = None) -> list[BuildRow]:
        """Builds in the order they started (of one folder and machine, of one folder, or all)."""
        query = select(builds).order_by(builds.c.id)
        if watch_dir is not None:
            query = query.where(builds.c.watch_dir == watch_dir)
        if machine is not None:
            query = query.where(builds.c.machine == machine)
        with self.engine.connect() as conn:
            return [
                BuildRow(
                    r.id,
                    r.watch_dir,
                    r.name or Path(r.watch_dir).name,
                    r.model or "",
                    r.started or 0.0,
                    r.machine or "",
                )
                for r in conn.execute(query)
            ]

    def new_build(self, watch_dir: str, name: str, model: str = "", machine: str = "") -> "BuildHandle":
        with self.engine.begin() as conn:
            values = {"watch_dir": watch_dir, "name": name, "model": model, "started": time.time(), "machine": machine}
            build_id = conn.execute(insert(builds).values(**values)).inserted_primary_key[0]
        return BuildHandle(self, BuildRow(build_id, watch_dir, name, model, values["started"], machine))

    def open_build(self, watch_dir: str, name: str | None = None, model: str = "", machine: str = "") -> "BuildHandle":
        """The build called `name` (or the latest) of this folder on this machine, created when there
        is none. A named machine first takes up the folder's builds stored without a machine name
        (by an slmcnn before machines were keys): its monitor goes on with them."""
        if machine and not self.builds(watch_dir, machine):
            with self.engine.begin() as conn:
                unnamed = (builds.c.watch_dir == watch_dir, builds.c.machine == "")
                if conn.execute(update(builds).where(*unnamed).values(machine=machine)).rowcount:
                    log.info("%s: builds stored without a machine name are taken up as %s's", watch_dir, machine)
        found = [b for b in self.builds(watch_dir, machine) if name is None or b.name == name]
        if found:
            return BuildHandle(self, found[-1])
        return self.new_build(watch_dir, name or Path(watch_dir).name, model, machine)

    def machines(self) -> list[str]:
        """The machines (monitor --machine) that stored builds here, by name."""
        with self.engine.connect() as conn:
            return sorted({r.machine or "" for r in conn.execute(select(builds.c.machine))} - {""})

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

    # what the report reads
    def layers(self, build_id: int) -> list[StoredLayer]:
        columns = [c for c in layers.columns if c.name != "thumbnail"]
        query = select(*columns).where(layers.c.build_id == build_id).order_by(layers.c.number, layers.c.id)
        with self.engine.connect() as conn:
            return [
                StoredLayer(
                    r.id,
                    r.number,
                    r.file,
                    r.path,
                    r.status,
                    r.message,
                    {"Powder": r.powder, "Object": r.object, "Error": r.error},
                    json.loads(r.geometry) if r.geometry else None,
                    r.overlay,
                    r.digest,
                    r.seconds,
                )
                for r in conn.execute(query)
            ]

    def alerts(self, build_id: int) -> list[Alert]:
        return [stored.alert for stored in self.alert_rows(build_id)]

    def alert_rows(self, build_id: int) -> list[StoredAlert]:
        """A build's alerts with their ids and layers (the app's review queue), by layer."""
        query = (
            select(alerts, builds.c.name, builds.c.machine, builds.c.watch_dir)
            .join(builds, builds.c.id == alerts.c.build_id)
            .where(alerts.c.build_id == build_id)
            .order_by(alerts.c.layer, alerts.c.id)
        )
        with self.engine.connect() as conn:
            return [StoredAlert(r.id, r.layer_id, alert_of(r), r.created) for r in conn.execute(query)]

    def unraised_alerts(self, watch_dir: str, machine: str) -> list[tuple[int, Alert]]:
        """Alerts of any build of the folder on this machine stored but not delivered yet (the monitor
        stopped in between, or their hook failed), oldest first: a new build or a restart raises them too."""
        query = (
            select(alerts, builds.c.name, builds.c.machine, builds.c.watch_dir)
            .join(builds, builds.c.id == alerts.c.build_id)
            .where(builds.c.watch_dir == watch_dir, builds.c.machine == machine, alerts.c.raised == 0)
            .order_by(alerts.c.id)
        )
        with self.engine.connect() as conn:
            return [(r.id, alert_of(r)) for r in conn.execute(query)]

    def grades(self, build_id: int) -> dict[int, str]:
        """The grade of each graded layer of a build, by layer number (layers.grade)."""
        query = select(layers.c.number, layers.c.grade).where(
            layers.c.build_id == build_id, layers.c.grade.is_not(None)
        )
        with self.engine.connect() as conn:
            return {r.number: r.grade for r in conn.execute(query)}

    def overview(self, build_id: int) -> BuildOverview:
        done = (layers.c.build_id == build_id, layers.c.status == "done")
        with self.engine.connect() as conn:
            count, last = conn.execute(select(func.count(), func.max(layers.c.processed)).where(*done)).one()
            graded = conn.execute(select(layers.c.grade, func.count()).where(*done).group_by(layers.c.grade))
            grades = {grade: n for grade, n in graded if grade}
        return BuildOverview(count, grades, last)

    def monitor_running(self, watch_dir: str, machine: str) -> bool | None:
        """Whether a monitor follows this folder on this machine now (None: not knowable from here)."""
        return monitor_running(self.engine, watch_dir, machine)

    def tile_anomaly(self, layer_id: int) -> np.ndarray | None:
        """A layer's per-tile anomaly scores (row-major), None where no camera profile scored it."""
        query = select(tiles.c.anomaly).where(tiles.c.layer_id == layer_id).order_by(tiles.c.row, tiles.c.col)
        with self.engine.connect() as conn:
            values = [r[0] for r in conn.execute(query)]
        return None if not values or any(v is None for v in values) else np.array(values, np.float32)

    def tile_grid(self, layer_id: int) -> tuple[np.ndarray, np.ndarray]:
        """A layer's stored tile classes (rows, cols) and probabilities (rows*cols, classes)."""
        columns = [tiles.c.row, tiles.c.col, tiles.c.cls, *(tiles.c[PROBABILITY_COLUMNS[c]] for c in CLASSES)]
        query = select(*columns).where(tiles.c.layer_id == layer_id).order_by(tiles.c.row, tiles.c.col)
        with self.engine.connect() as conn:
            cells = conn.execute(query).all()
        shape = (max(c[0] for c in cells) + 1, max(c[1] for c in cells) + 1)
        classes = np.array([c[2] for c in cells], np.int64).reshape(shape)
        return classes, np.array([c[3:] for c in cells], np.float32)

    def layer_result(self, stored: StoredLayer) -> LayerResult:
        """A stored layer back as the LayerResult it was: its tiles, probabilities, anomaly, class map
        and calibration; its image is the kept thumbnail at the layer's size (blank without one)."""
        import cv2

        from slmcnn.camera import CameraCalibration
        from slmcnn.predict import classify_pixels

        grid = geometry_of(stored)
        classes, probabilities = self.tile_grid(stored.id)
        doc = (stored.geometry or {}).get("camera")
        camera = CameraCalibration(**doc) if doc else None
        ignore = camera.ignore_mask() if camera is not None and camera.ignore else None
        class_map, ignored = classify_pixels(grid, probabilities, ignore)
        thumbnail = self.thumbnail(stored.id)
        image = np.zeros((grid.height, grid.width, 3), np.uint8)
        if thumbnail:
            small = cv2.imdecode(np.frombuffer(thumbnail, np.uint8), cv2.IMREAD_COLOR)
            image = cv2.cvtColor(cv2.resize(small, (grid.width, grid.height)), cv2.COLOR_BGR2RGB)
        seconds = stored.seconds or 0.0
        result = LayerResult(Path(stored.path or stored.file), image, grid, probabilities, class_map, seconds)
        result.camera, result.ignored, result.anomaly = camera, ignored, self.tile_anomaly(stored.id)
        return result


class BuildHandle:
    """One build: what the monitor reads and writes while following it."""

    def __init__(self, db: Database, row: BuildRow):
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
            rows = conn.execute(query).scalars().all()
        return [self.db.tile_grid(layer_id)[0] for layer_id in reversed(rows)]

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
        f = result.fractions
        geometry = result.grid.to_json()
        if result.camera is not None:
            geometry["camera"] = result.camera.to_json()
        classes = result.tile_classes.ravel()
        cols = result.grid.shape[1]
        file = storable(result.path.name)
        with self.db.engine.begin() as conn:
            retaken = conn.execute(
                select(layers.c.id).where(layers.c.build_id == self.id, layers.c.file == file)
            ).scalar()
            if retaken is not None:
                conn.execute(delete(tiles).where(tiles.c.layer_id == retaken))
            row = dict(
                build_id=self.id,
                number=number,
                file=file,
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
            if retaken is None:
                layer_id = conn.execute(insert(layers).values(**row)).inserted_primary_key[0]
            else:
                layer_id = retaken
                conn.execute(update(layers).where(layers.c.id == retaken).values(**row))
            probs = result.probabilities
            conn.execute(
                insert(tiles),
                [
                    {
                        "layer_id": layer_id,
                        "row": i // cols,
                        "col": i % cols,
                        "cls": int(classes[i]),
                        **{PROBABILITY_COLUMNS[c]: float(probs[i, k]) for k, c in enumerate(CLASSES)},
                        "anomaly": float(result.anomaly[i]) if result.anomaly is not None else None,
                    }
                    for i in range(len(classes))
                ],
            )
            if alert is not None:
                values = {
                    k: getattr(alert, k) for k in ("layer", "file", "rule", "message", "value", "grade", "overlay")
                }
                values.update(
                    regions=json.dumps(alert.regions),
                    build_id=self.id,
                    layer_id=layer_id,
                    created=time.time(),
                    raised=0,  # never the column's default: a migrated 0.1 database had 1 there
                )
                return conn.execute(insert(alerts).values(**values)).inserted_primary_key[0]
        return None

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


def alert_of(row) -> Alert:
    """An alert as stored (with its build's name and machine); alerts of slmcnn before graded
    alerts have no grade: they were raised by one rule each and are shown as critical."""
    regions = json.loads(row.regions) if row.regions else []
    name = row.name or Path(row.watch_dir).name
    grade = row.grade or "critical"
    pushed = not (grade == "minor" and sum(r.get("tiles", 0) for r in regions) == 1)
    machine, overlay = row.machine or "", row.overlay or ""
    return Alert(
        row.layer, row.file, grade, row.message, row.value, regions, name, machine, overlay, pushed, row.rule or ""
    )


def geometry_of(layer: StoredLayer) -> TileGeometry:
    return TileGeometry.from_json(layer.geometry)
