"""The schema slmcnn had before versioned migrations (that of commit 5e85a37), frozen here: made in
a new database; a database of an older slmcnn gains the tables and columns it lacks (slmcnn 0.1's
alerts were all raised) and lets a folder hold several builds (0.1 made builds.watch_dir unique)."""

import sqlalchemy as sa
from alembic import op

from slmcnn.monitoring.migrations import add_missing

revision = "0001"
down_revision = None

schema = sa.MetaData()
builds = sa.Table(
    "builds",
    schema,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("watch_dir", sa.String, nullable=False),
    sa.Column("model", sa.String),
    sa.Column("started", sa.Float),
    sa.Column("name", sa.String),
    sa.Column("machine", sa.String),
)
sa.Table(
    "layers",
    schema,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("build_id", sa.ForeignKey("builds.id"), nullable=False),
    sa.Column("number", sa.Integer),
    sa.Column("file", sa.String, nullable=False),
    sa.Column("path", sa.String),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("message", sa.Text),
    sa.Column("processed", sa.Float),
    sa.Column("seconds", sa.Float),
    sa.Column("powder", sa.Float),
    sa.Column("object", sa.Float),
    sa.Column("error", sa.Float),
    sa.Column("geometry", sa.Text),
    sa.Column("overlay", sa.String),
    sa.Column("size", sa.Integer),
    sa.Column("mtime", sa.Float),
    sa.Column("digest", sa.String),
    sa.Column("thumbnail", sa.LargeBinary),
    sa.UniqueConstraint("build_id", "file"),
)
sa.Table(
    "tiles",
    schema,
    sa.Column("layer_id", sa.ForeignKey("layers.id"), primary_key=True),
    sa.Column("row", sa.Integer, primary_key=True),
    sa.Column("col", sa.Integer, primary_key=True),
    sa.Column("cls", sa.Integer, nullable=False),
    sa.Column("p_powder", sa.Float),
    sa.Column("p_object", sa.Float),
    sa.Column("p_error", sa.Float),
    sa.Column("anomaly", sa.Float),
)
sa.Table(
    "alerts",
    schema,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("build_id", sa.ForeignKey("builds.id"), nullable=False),
    sa.Column("layer_id", sa.ForeignKey("layers.id"), nullable=False),
    sa.Column("layer", sa.Integer),
    sa.Column("file", sa.String),
    sa.Column("rule", sa.String),
    sa.Column("message", sa.Text),
    sa.Column("value", sa.Float),
    sa.Column("created", sa.Float),
    sa.Column("raised", sa.Integer, nullable=False, server_default="0"),
)
sa.Table(
    "attempts",
    schema,
    sa.Column("watch_dir", sa.String, primary_key=True),
    sa.Column("file", sa.String, primary_key=True),
    sa.Column("size", sa.Integer),
    sa.Column("mtime", sa.Float),
    sa.Column("count", sa.Integer, nullable=False),
)


def upgrade() -> None:
    conn = op.get_bind()
    present = set(sa.inspect(conn).get_table_names())
    for table in schema.sorted_tables:
        if table.name in present:
            added = add_missing(conn, table, {"raised": "INTEGER NOT NULL DEFAULT 0"})
            if table.name == "alerts" and "raised" in added:  # slmcnn 0.1 raised every alert it stored
                conn.exec_driver_sql("UPDATE alerts SET raised = 1")
        else:
            table.create(conn)
    unique = [u for u in sa.inspect(conn).get_unique_constraints("builds") if u["column_names"] == ["watch_dir"]]
    if not unique:
        return
    if conn.dialect.name != "sqlite":
        op.drop_constraint(unique[0]["name"], "builds")
        return
    # SQLite cannot drop a constraint: copy the table (renaming the new one, never the old, keeps
    # the layers' and alerts' references to "builds" as they are)
    columns = ", ".join(c.name for c in builds.columns)
    conn.exec_driver_sql("DROP TABLE IF EXISTS builds_new")  # a copy killed before migrations were one transaction
    builds.to_metadata(sa.MetaData(), name="builds_new").create(conn)
    conn.exec_driver_sql(f"INSERT INTO builds_new ({columns}) SELECT {columns} FROM builds")
    conn.exec_driver_sql("DROP TABLE builds")
    conn.exec_driver_sql("ALTER TABLE builds_new RENAME TO builds")
