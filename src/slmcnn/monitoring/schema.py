"""The monitor's tables, and how a database of an older slmcnn is brought to them."""

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    text,
)
from sqlalchemy.engine import Engine

metadata = MetaData()
builds = Table(
    "builds",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("watch_dir", String, nullable=False),
    Column("model", String),
    Column("started", Float),
    Column("name", String),
    Column("machine", String),  # the printer a monitor follows (monitor --machine); "" when not named
)
layers = Table(
    "layers",
    metadata,
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
    Column("geometry", Text),  # JSON: width, height, patch, stride, tile origins (+ camera calibration)
    Column("overlay", String),
    Column("size", Integer),
    Column("mtime", Float),
    Column("digest", String),
    Column("thumbnail", LargeBinary),  # a small JPEG of the photo as classified: shown once the file changes
    Column("grade", String),  # ok | minor | critical (grading.py, with the persistence rule)
    UniqueConstraint("build_id", "file"),
)
tiles = Table(
    "tiles",
    metadata,
    Column("layer_id", ForeignKey("layers.id"), primary_key=True),
    Column("row", Integer, primary_key=True),
    Column("col", Integer, primary_key=True),
    Column("cls", Integer, nullable=False),  # the tile's class, NOT_A_CLASS (-1) where ignored
    Column("p_powder", Float),
    Column("p_object", Float),
    Column("p_error", Float),
    Column("anomaly", Float),
)
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("build_id", ForeignKey("builds.id"), nullable=False),
    Column("layer_id", ForeignKey("layers.id"), nullable=False),
    Column("layer", Integer),
    Column("file", String),
    Column("rule", String),
    Column("message", Text),
    Column("value", Float),
    Column("grade", String),  # minor | critical: one graded alert per layer
    Column("regions", Text),  # JSON: the tile boxes of the layer's error regions
    Column("overlay", String),
    Column("created", Float),
    # 0 until printed, appended to alerts.jsonl and handed to --on-alert: a monitor killed in between
    # raises it again when restarted, so no alert is lost
    Column("raised", Integer, nullable=False, server_default="0"),
)
attempts = Table(  # layers being classified: a row left behind means the monitor died on that file
    "attempts",
    metadata,
    Column("watch_dir", String, primary_key=True),
    Column("file", String, primary_key=True),
    Column("size", Integer),
    Column("mtime", Float),
    Column("count", Integer, nullable=False),
)
PROBABILITY_COLUMNS = {"Powder": "p_powder", "Object": "p_object", "Error": "p_error"}
ADDED_COLUMNS = {("alerts", "raised"): "INTEGER NOT NULL DEFAULT 1"}  # slmcnn 0.1.0's alerts were all raised


def upgrade(engine: Engine) -> None:
    """Bring a database of an older slmcnn to this schema: add missing columns, and let a folder
    hold several builds (slmcnn 0.1 made builds.watch_dir unique)."""
    found = inspect(engine)
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            have = {c["name"] for c in found.get_columns(table.name)}
            for column in table.columns:
                if column.name not in have:
                    kind = ADDED_COLUMNS.get((table.name, column.name), column.type.compile(engine.dialect))
                    conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))
    unique = [u for u in found.get_unique_constraints("builds") if u["column_names"] == ["watch_dir"]]
    if not unique:
        return
    with engine.begin() as conn:
        if engine.dialect.name != "sqlite":
            conn.execute(text(f"ALTER TABLE builds DROP CONSTRAINT {unique[0]['name']}"))
            return
        # SQLite cannot drop a constraint: copy the table (renaming the new one, never the old,
        # keeps the layers' and alerts' references to "builds" as they are)
        columns = ", ".join(c.name for c in builds.columns)
        builds.to_metadata(MetaData(), name="builds_new").create(conn)
        conn.execute(text(f"INSERT INTO builds_new ({columns}) SELECT {columns} FROM builds"))
        conn.execute(text("DROP TABLE builds"))
        conn.execute(text("ALTER TABLE builds_new RENAME TO builds"))
