"""The monitor's tables as this slmcnn reads and writes them; a change to them is also a migration
(migrations/versions/), which brings every database, new or older, to them."""

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
)

metadata = MetaData()
builds = Table(
    "builds",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("watch_dir", String, nullable=False),
    Column("model", String),
    Column("started", Float),
    Column("name", String),
    # the printer or computer a monitor follows (monitor --machine, default the host name); "" in
    # builds of an slmcnn before that, until a named monitor of the folder takes them up
    Column("machine", String),
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
    Column("machine", String, primary_key=True),
    Column("watch_dir", String, primary_key=True),
    Column("file", String, primary_key=True),
    Column("size", Integer),
    Column("mtime", Float),
    Column("count", Integer, nullable=False),
)
PROBABILITY_COLUMNS = {"Powder": "p_powder", "Object": "p_object", "Error": "p_error"}
