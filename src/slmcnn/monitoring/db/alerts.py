"""The store's alerts: a build's review queue, and those stored but not raised yet."""

import json
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine

from slmcnn.monitoring import schema
from slmcnn.monitoring.alerts import Alert
from slmcnn.monitoring.db.layers import chunks
from slmcnn.monitoring.db.records import StoredAlert

ALERTS = select(schema.alerts, schema.builds.c.name, schema.builds.c.machine, schema.builds.c.watch_dir).join(
    schema.builds, schema.builds.c.id == schema.alerts.c.build_id
)


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


class AlertQueries:
    """The alerts of a `Database`."""

    engine: Engine

    def alerts(self, build_id: int) -> list[Alert]:
        return [stored.alert for stored in self.alert_rows(build_id)]

    def alert_rows(self, build_id: int) -> list[StoredAlert]:
        """A build's alerts with their ids and layers (the app's review queue), by layer."""
        return self.alerts_of([build_id])[build_id]

    def alerts_of(self, build_ids: list[int]) -> dict[int, list[StoredAlert]]:
        """The alerts of several builds, each by layer, in one query per CHUNK builds (the report's)."""
        found: dict[int, list[StoredAlert]] = {build_id: [] for build_id in build_ids}
        by_layer = (schema.alerts.c.layer, schema.alerts.c.id)
        with self.engine.connect() as conn:
            for part in chunks(list(build_ids)):
                for r in conn.execute(ALERTS.where(schema.alerts.c.build_id.in_(part)).order_by(*by_layer)):
                    found[r.build_id].append(StoredAlert(r.id, r.layer_id, alert_of(r), r.created))
        return found

    def unraised_alerts(self, watch_dir: str, machine: str) -> list[tuple[int, Alert]]:
        """Alerts of any build of the folder on this machine stored but not delivered yet (the monitor
        stopped in between, or their hook failed), oldest first: a new build or a restart raises them too."""
        builds, alerts = schema.builds, schema.alerts
        query = ALERTS.where(builds.c.watch_dir == watch_dir, builds.c.machine == machine, alerts.c.raised == 0)
        with self.engine.connect() as conn:
            return [(r.id, alert_of(r)) for r in conn.execute(query.order_by(alerts.c.id))]
