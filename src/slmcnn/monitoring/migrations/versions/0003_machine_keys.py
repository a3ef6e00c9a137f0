"""Builds and attempts keyed by machine and folder (#40): two computers whose camera folders have
the same path share one database without mixing their builds. A build stored without a machine
gets "" (a named monitor of its folder takes it up); attempts gain the machine in their key."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    conn = op.get_bind()
    conn.exec_driver_sql("UPDATE builds SET machine = '' WHERE machine IS NULL")
    # a primary key cannot be changed in place on SQLite: a new table, renamed over the old one
    attempts = sa.Table(
        "attempts_new",
        sa.MetaData(),
        sa.Column("machine", sa.String, primary_key=True),
        sa.Column("watch_dir", sa.String, primary_key=True),
        sa.Column("file", sa.String, primary_key=True),
        sa.Column("size", sa.Integer),
        sa.Column("mtime", sa.Float),
        sa.Column("count", sa.Integer, nullable=False),
    )
    attempts.create(conn)
    conn.exec_driver_sql(
        "INSERT INTO attempts_new (machine, watch_dir, file, size, mtime, count) "
        "SELECT '', watch_dir, file, size, mtime, count FROM attempts"
    )
    op.drop_table("attempts")
    op.rename_table("attempts_new", "attempts")
