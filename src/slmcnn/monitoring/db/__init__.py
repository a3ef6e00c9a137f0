"""The monitor's store, by concern: `connection` (where the database is, opening it, its tables
brought to ../schema.py by ../migrations, errors as one line), `builds` (builds keyed by machine
and folder, overviews), `layers` (layers and tiles as the report and the app read them), `alerts`,
`handle` (one build as the monitor writes it) and `records` (what is read back). A listing is one
query, never one per build or per layer.

Each finished layer is one transaction with its tiles and alert; each stored layer keeps the size,
modification time and SHA-1 of its file, so a rewritten file is recognised.
"""

from pathlib import Path

from slmcnn.monitoring.db.alerts import AlertQueries
from slmcnn.monitoring.db.builds import BuildQueries
from slmcnn.monitoring.db.connection import database_errors, open_engine, shown_url
from slmcnn.monitoring.db.layers import LayerQueries
from slmcnn.monitoring.lock import MonitorLock


class Database(BuildQueries, LayerQueries, AlertQueries):
    """Builds, layers, tiles and alerts in one database."""

    def __init__(self, db: str | Path, create: bool = True):
        """Open (with `create`, make) a monitor's database (connection.open_engine)."""
        self.source = db
        self.engine = open_engine(db, create)

    def lock(self, watch_dir: str, machine: str) -> MonitorLock:
        """Hold the one-monitor lock for `watch_dir` on `machine`, or raise DatabaseError when another has it."""
        with database_errors(self.source):
            return MonitorLock(self.engine, watch_dir, machine, shown_url(self.source))
