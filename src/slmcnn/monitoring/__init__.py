"""Live build monitoring: `watch` (folder, settling, order, retries, builds), `alerts` (one graded
alert per layer, journal, a pool of hooks), `db` (schema, a handle per build, the report's queries) and `report` (reads only
what the monitor stored)."""

from slmcnn.monitoring.alerts import Alert, AlertHook
from slmcnn.monitoring.db import Database
from slmcnn.monitoring.report import write_report
from slmcnn.monitoring.watch import Monitor, MonitorConfig, layer_number, layer_timestamp

__all__ = [
    "Alert",
    "AlertHook",
    "Database",
    "Monitor",
    "MonitorConfig",
    "layer_number",
    "layer_timestamp",
    "write_report",
]
