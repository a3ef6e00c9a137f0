"""The store's builds: keyed by machine and folder (a shop's computers name their camera folders
alike), several one after another in a folder; the layer being classified (attempts); each
build's overview for the app's start page, all builds in two queries."""

import logging
import time
from pathlib import Path

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Engine

from slmcnn.monitoring.db.handle import BuildHandle
from slmcnn.monitoring.db.layers import chunks
from slmcnn.monitoring.db.records import BuildOverview, BuildRow, FileStamp
from slmcnn.monitoring.lock import monitor_running, monitors_running
from slmcnn.monitoring.schema import alerts, attempts, builds, layers

log = logging.getLogger(__name__)


class BuildQueries:
    """The builds of a `Database`."""

    engine: Engine

    def builds(self, watch_dir: str | None = None, machine: str | None = None) -> list[BuildRow]:
        """Builds in the order they started (of one folder and machine, of one folder, or all)."""
        query = select(builds).order_by(builds.c.id)
        if watch_dir is not None:
            query = query.where(builds.c.watch_dir == watch_dir)
        if machine is not None:
            query = query.where(builds.c.machine == machine)
        with self.engine.connect() as conn:
            return [
                BuildRow(r.id, r.watch_dir, r.name or Path(r.watch_dir).name, r.model or "", r.started or 0.0, r.machine or "")
                for r in conn.execute(query)
            ]  # fmt: skip

    def new_build(self, watch_dir: str, name: str, model: str = "", machine: str = "") -> BuildHandle:
        with self.engine.begin() as conn:
            values = {"watch_dir": watch_dir, "name": name, "model": model, "started": time.time(), "machine": machine}
            build_id = conn.execute(insert(builds).values(**values)).inserted_primary_key[0]
        return BuildHandle(self, BuildRow(build_id, watch_dir, name, model, values["started"], machine))

    def open_build(self, watch_dir: str, name: str | None = None, model: str = "", machine: str = "") -> BuildHandle:
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

    def overviews(self, build_ids: list[int]) -> dict[int, BuildOverview]:
        """Each build at a glance (done layers by grade, the last one's time, its alerts), in two
        queries per CHUNK builds, not a few per build."""
        found = {build_id: BuildOverview(0, {}, None) for build_id in build_ids}
        with self.engine.connect() as conn:
            for part in chunks(list(build_ids)):
                done = (layers.c.build_id.in_(part), layers.c.status == "done")
                counted = select(layers.c.build_id, layers.c.grade, func.count(), func.max(layers.c.processed))
                for build_id, grade, count, last in conn.execute(
                    counted.where(*done).group_by(layers.c.build_id, layers.c.grade)
                ):
                    seen = found[build_id]
                    seen.layers += count
                    seen.last = last if seen.last is None or (last is not None and last > seen.last) else seen.last
                    if grade:
                        seen.grades[grade] = count
                ids = select(alerts.c.build_id, alerts.c.id).where(alerts.c.build_id.in_(part)).order_by(alerts.c.id)
                for build_id, alert_id in conn.execute(ids):
                    found[build_id].alerts.append(alert_id)
        return found

    def latest_builds(self) -> set[int]:
        """The latest build of each folder on each machine (the one its monitor writes to)."""
        query = select(func.max(builds.c.id)).group_by(builds.c.watch_dir, builds.c.machine)
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def monitor_running(self, watch_dir: str, machine: str) -> bool | None:
        """Whether a monitor follows this folder on this machine now (None: not knowable from here)."""
        return monitor_running(self.engine, watch_dir, machine)

    def monitors_running(self, folders: list[tuple[str, str]]) -> dict[tuple[str, str], bool | None]:
        """monitor_running for many (folder, machine) pairs, looked up once."""
        return monitors_running(self.engine, folders)

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

    def end_attempt(self, watch_dir: str, machine: str, file: str) -> None:
        where = (attempts.c.machine == machine, attempts.c.watch_dir == watch_dir, attempts.c.file == file)
        with self.engine.begin() as conn:
            conn.execute(delete(attempts).where(*where))
