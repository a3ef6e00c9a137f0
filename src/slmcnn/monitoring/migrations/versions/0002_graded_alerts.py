"""Graded alerts (#30): a layer's grade (ok, minor, critical), an alert's grade, its error regions
and overlay. A database made between 5e85a37 and migrations may hold them already."""

import sqlalchemy as sa
from alembic import op

from slmcnn.monitoring.migrations import add_missing

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    conn = op.get_bind()
    add_missing(conn, sa.Table("layers", sa.MetaData(), sa.Column("grade", sa.String)))
    columns = (sa.Column("grade", sa.String), sa.Column("regions", sa.Text), sa.Column("overlay", sa.String))
    add_missing(conn, sa.Table("alerts", sa.MetaData(), *columns))
