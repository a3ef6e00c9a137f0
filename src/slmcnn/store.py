"""Writing results: per-layer PNG / JSON files and the summary CSV (and, for monitoring, SQLite)."""

import csv
import json
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)

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


class LayerWriter:
    """write_layer on a background thread: PNG compression releases the GIL, so it overlaps the
    network instead of following it. At most `max_pending` layers wait, which bounds memory; an
    error while writing is raised by the next submit() or by close()."""

    def __init__(self, out: Path, max_pending: int = 4):
        self.out = out
        self.max_pending = max_pending
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="slmcnn-writer")
        self.pending: deque = deque()

    def submit(self, result: LayerResult, stem: str) -> None:
        while len(self.pending) >= self.max_pending:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(write_layer, result, self.out, stem))

    def close(self) -> None:
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True)

    def __enter__(self) -> "LayerWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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


schema = MetaData()
builds = Table(
    "builds",
    schema,
    Column("id", Integer, primary_key=True),
    Column("watch_dir", String, unique=True, nullable=False),
    Column("model", String),
    Column("started", Float),
)
layers = Table(
    "layers",
    schema,
    Column("id", Integer, primary_key=True),
    Column("build_id", ForeignKey("builds.id"), nullable=False),
    Column("number", Integer),
    Column("file", String, nullable=False),
    Column("path", String),
    Column("status", String, nullable=False),  # done | failed
    Column("message", Text),
    Column("processed", Float),
    Column("seconds", Float),
    Column("powder", Float),
    Column("object", Float),
    Column("error", Float),
    Column("geometry", Text),  # JSON: width, height, patch, stride, tile origins
    Column("overlay", String),
    UniqueConstraint("build_id", "file"),
)
tiles = Table(
    "tiles",
    schema,
    Column("layer_id", ForeignKey("layers.id"), primary_key=True),
    Column("row", Integer, primary_key=True),
    Column("col", Integer, primary_key=True),
    Column("cls", Integer, nullable=False),
    Column("p_powder", Float),
    Column("p_object", Float),
    Column("p_error", Float),
)
alerts = Table(
    "alerts",
    schema,
    Column("id", Integer, primary_key=True),
    Column("build_id", ForeignKey("builds.id"), nullable=False),
    Column("layer_id", ForeignKey("layers.id"), nullable=False),
    Column("layer", Integer),
    Column("file", String),
    Column("rule", String),
    Column("message", Text),
    Column("value", Float),
    Column("created", Float),
    # 0 until printed, appended to alerts.jsonl and handed to --on-alert: a monitor killed in between
    # raises it again when restarted, so no alert is lost
    Column("raised", Integer, nullable=False, server_default="0"),
)


def database_url(db: str | Path) -> str:
    """A path means an SQLite file; anything with '://' is an SQLAlchemy URL (e.g. PostgreSQL)."""
    return str(db) if "://" in str(db) else f"sqlite:///{Path(db).resolve()}"


class ResultStore:
    """Builds, layers, tiles and alerts in one database; each layer is one transaction."""

    def __init__(self, db: str | Path):
        self.engine = create_engine(database_url(db))
        schema.create_all(self.engine)
        if "raised" not in {c["name"] for c in inspect(self.engine).get_columns("alerts")}:
            with self.engine.begin() as conn:  # a database from slmcnn 0.1.0: its alerts were all raised
                conn.execute(text("ALTER TABLE alerts ADD COLUMN raised INTEGER NOT NULL DEFAULT 1"))

    def build(self, watch_dir: str, model: str = "") -> int:
        with self.engine.begin() as conn:
            found = conn.execute(select(builds.c.id).where(builds.c.watch_dir == watch_dir)).scalar()
            if found is not None:
                return found
            return conn.execute(
                insert(builds).values(watch_dir=watch_dir, model=model, started=time.time())
            ).inserted_primary_key[0]

    def finished_files(self, build_id: int) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(layers.c.file).where(layers.c.build_id == build_id)).scalars())

    def next_number(self, build_id: int) -> int:
        with self.engine.connect() as conn:
            return (
                int(
                    conn.execute(
                        select(func.coalesce(func.max(layers.c.number), 0)).where(layers.c.build_id == build_id)
                    ).scalar()
                )
                + 1
            )

    def history(self, build_id: int, count: int) -> list[tuple[np.ndarray, float]]:
        """Tile grids and error fractions of the last `count` finished layers, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(layers.c.id, layers.c.error)
                .where(layers.c.build_id == build_id, layers.c.status == "done")
                .order_by(layers.c.number.desc())
                .limit(count)
            ).all()
            out = []
            for layer_id, error in reversed(rows):
                cells = conn.execute(
                    select(tiles.c.row, tiles.c.col, tiles.c.cls).where(tiles.c.layer_id == layer_id)
                ).all()
                grid = np.zeros((max(r for r, _, _ in cells) + 1, max(c for _, c, _ in cells) + 1), np.int64)
                for r, c, k in cells:
                    grid[r, c] = k
                out.append((grid, error))
            return out

    def add_layer(self, build_id: int, number: int, result: LayerResult, alert_rows: list[dict], overlay_path) -> None:
        f = result.fractions
        rows_n, cols_n = result.grid.shape
        geometry = {
            "width": result.grid.width,
            "height": result.grid.height,
            "patch": result.grid.patch,
            "stride": result.grid.stride,
            "ys": result.grid.ys.tolist(),
            "xs": result.grid.xs.tolist(),
        }
        with self.engine.begin() as conn:
            layer_id = conn.execute(
                insert(layers).values(
                    build_id=build_id,
                    number=number,
                    file=result.path.name,
                    path=str(result.path),
                    status="done",
                    processed=time.time(),
                    seconds=result.seconds,
                    powder=f["Powder"],
                    object=f["Object"],
                    error=f["Error"],
                    geometry=json.dumps(geometry),
                    overlay=str(overlay_path) if overlay_path else None,
                )
            ).inserted_primary_key[0]
            probs = result.probabilities
            classes = probs.argmax(1)
            conn.execute(
                insert(tiles),
                [
                    {
                        "layer_id": layer_id,
                        "row": i // cols_n,
                        "col": i % cols_n,
                        "cls": int(classes[i]),
                        "p_powder": float(probs[i, 0]),
                        "p_object": float(probs[i, 1]),
                        "p_error": float(probs[i, 2]),
                    }
                    for i in range(rows_n * cols_n)
                ],
            )
            if alert_rows:
                conn.execute(
                    insert(alerts),
                    [{**a, "build_id": build_id, "layer_id": layer_id, "created": time.time()} for a in alert_rows],
                )

    def unraised_alerts(self, build_id: int) -> list[dict]:
        """Alerts stored but not yet fully raised (the monitor stopped in between), oldest first."""
        columns = [alerts.c.id, alerts.c.layer, alerts.c.file, alerts.c.rule, alerts.c.message, alerts.c.value]
        query = select(*columns).where(alerts.c.build_id == build_id, alerts.c.raised == 0).order_by(alerts.c.id)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def mark_raised(self, alert_ids: list[int]) -> None:
        if alert_ids:
            with self.engine.begin() as conn:
                conn.execute(update(alerts).where(alerts.c.id.in_(alert_ids)).values(raised=1))

    def add_failed(self, build_id: int, file: str, number: int | None, message: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(layers).values(
                    build_id=build_id, number=number, file=file, status="failed", message=message, processed=time.time()
                )
            )
