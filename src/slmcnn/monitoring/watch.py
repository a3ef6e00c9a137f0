"""Follow a running build: classify each new layer photo as soon as its file is complete, store it
with its alerts in one transaction, and raise the alerts early enough to stop the machine.

Layer order: the number that `pattern`'s first group finds in the file name; else the last number
in the name once a date-and-time stamp (20210916_104213, 20210916-104213, 20210916T104213) is taken
out; else that time stamp (layers are then numbered in time order); else the file's modification
time. A layer is complete when it arrived by an atomic rename, or when its size has not changed for
`settle` seconds. A monitor killed at any moment and started again loses nothing and repeats nothing.

Unreadable layers: a layer that cannot be read is tried again each time its file changes (size or
modification time: a slow writer), and `retries` times in all while it stays the same, `retry_wait`
seconds apart; only then is it stored as failed, and it is tried again if its file changes later.
So a layer is given up at most `settle` + `retries` x `retry_wait` seconds after its last change.
Images over the size limits (images.LIMITS) are refused from their header, before decoding. A layer
whose classification was under way when the monitor died `POISON_TRIES` times is read once in a
child process (monitoring.probe): if that kills the child too, the layer is stored as failed and
skipped, so one bad file never stops a build's monitoring; if not, the monitor was killed from
outside (SIGKILL, a reboot) and the layer is classified as any other. SIGTERM stops the monitor
as Ctrl-C does, ending the try first.

Builds: a folder may receive one build after another. A new build starts when `build` names one
not seen before, when the current build's first layer (or a file without a layer number) is
written again, or when layer numbers start again at or below the current build's first. A later
layer's photo taken again is classified again within its build (its row replaced, its alerts kept). Files stay with the build they were stored for, and no layer is ever skipped. Builds belong
to a machine (`machine`, default the host name) and a folder: the computers of a shop that share a
database may all watch /data/camera, each into builds of its own.

Database outages: while the database is away (an SQLite file another program holds, a server
restarting), the monitor says so in one line, waits and tries again with backoff, and goes on; a
classified layer waits in memory to be stored. Alerts whose hook failed are raised again with the
next layer, every RERAISE_EVERY seconds while none comes, in a new build and after a restart.
"""

import contextlib
import itertools
import logging
import queue
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from slmcnn.backends import Backend
from slmcnn.errors import DatabaseError, OutputError, SettingsError
from slmcnn.files import os_errors, remove_temporaries, resolved, storable
from slmcnn.grading import GradeRules
from slmcnn.images import IMAGE_SUFFIXES
from slmcnn.monitoring.alerts import WORKERS, Alert, AlertHook, AlertSender, deliver
from slmcnn.monitoring.db import Database
from slmcnn.monitoring.db.connection import database_errors, shown_url, unavailable
from slmcnn.monitoring.db.records import FileStamp, StoredFile
from slmcnn.monitoring.probe import layer_survives
from slmcnn.outputs import RunFiles, layer_number, layer_order, layer_timestamp  # noqa: F401 - re-exported
from slmcnn.pipeline import LayerOutcome, LayerPipeline, RunOptions
from slmcnn.validate import number, whole

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
POISON_TRIES = 2  # a layer whose classification killed the monitor this often is stored as failed
POISON = "poison layer:"
OUTAGE_WAITS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)  # seconds between tries while the database is away (then 30)
RERAISE_EVERY = 60.0  # seconds between tries of failed alerts (and checks of the lock) while no layer comes


@dataclass
class MonitorConfig:
    """What to watch and how (the `slmcnn monitor` options)."""

    watch_dir: Path
    out: Path | None = None  # overlays and alerts.jsonl
    build: str | None = None  # name of the build being followed (default: the folder's latest)
    # the printer or computer this monitor follows: its builds and lock are keyed by machine and folder
    machine: str = field(default_factory=socket.gethostname)
    pattern: str | None = None  # regex whose first group is the layer number
    settle: float = 0.5
    poll: bool = False  # poll the folder instead of OS events (network shares)
    retries: int = 3
    retry_wait: float = 2.0  # seconds between tries of an unreadable layer whose file does not change
    rules: GradeRules = field(default_factory=GradeRules)
    on_alert: str | None = None
    on_alert_timeout: float = 10.0
    alert_workers: int = WORKERS  # hooks running at once

    def __post_init__(self):
        self.watch_dir, self.out = Path(self.watch_dir), Path(self.out) if self.out is not None else None
        if not self.watch_dir.is_dir():
            raise SettingsError(f"{self.watch_dir}: no such folder to watch")
        number(self.settle, "settle", 0, 3600)
        number(self.retry_wait, "retry_wait", 0, 3600)
        number(self.on_alert_timeout, "on_alert_timeout", 0.001)
        whole(self.retries, "retries", 1)
        whole(self.alert_workers, "alert_workers", 1, 64)
        compile_pattern(self.pattern)


def compile_pattern(pattern: str | None) -> re.Pattern | None:
    """The layer-number pattern, checked: a valid regular expression with a group for the number."""
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise SettingsError(f"`pattern` {pattern!r} is not a regular expression ({exc})") from None
    if compiled.groups < 1:
        raise SettingsError(f"`pattern` {pattern!r} has no group: put the layer number in one, e.g. 'layer_(\\d+)'")
    return compiled


class Monitor:
    """Watch a folder, classify new layers in order, store them per build, raise alerts."""

    def __init__(
        self,
        config: MonitorConfig,
        db: Database,
        backend: Backend,
        options: RunOptions | None = None,
        model: "torch.nn.Module | None" = None,
    ):
        self.config = config
        self.db = db
        self.options = options or RunOptions(workers=1)
        self.watch_dir = config.watch_dir.resolve()
        self.key, self.machine = str(self.watch_dir), config.machine
        self.lock = db.lock(self.key, self.machine)
        self.pattern = compile_pattern(config.pattern)
        self.hook = AlertHook(
            config.out / "alerts.jsonl" if config.out else None, config.on_alert, config.on_alert_timeout
        )
        self.sender: AlertSender | None = None
        self.outage, self.away_since = threading.Lock(), None  # the database away since (monotonic s)
        self.retry: dict[str, tuple[tuple[int, float], int, float]] = {}  # name: (size, mtime), tries, next try
        with os_errors(config.out or ".", "cannot use"):  # the report reads the overlays from anywhere
            out = resolved(config.out) if config.out else None
        if out is not None and out.is_dir():
            remove_temporaries(out)  # of a monitor of this folder killed while writing an overlay
        self.files = RunFiles(out, ("overlay",), summary=False, background=False) if out else None
        self.pipeline = LayerPipeline(backend, self.options, self.files, model, config.rules)
        self.pipeline.predictor.warm_up()  # the network's first-call costs now, not on the first layer
        build = db.open_build(self.key, config.build, self.options.model_name, self.machine)
        self.stored = db.stored_files(self.key, self.machine)
        self.digests: dict[tuple[str, int, float], str] = {}
        self._use(build)
        self._relearn()
        self.events: queue.Queue = queue.Queue()

    def _use(self, build) -> None:
        history = build.history(self.config.rules.history_needed)
        first = self.db.builds(self.key, self.machine)[0].id == build.id
        self.build = build
        self.pipeline.new_build()
        self.pipeline.grader.history = history
        if self.files:
            self.files.prefix = "" if first else f"build{build.id}_"

    def _relearn(self) -> None:
        """A monitor started again in the middle of a build: its build memory (adapt.BuildMemory)
        learns the build's stored layers again, in order, so later layers are judged as before."""
        backend = self.pipeline.predictor.backend
        memory = getattr(backend, "memory", None) is not None
        if not memory and self.pipeline.mapper is None:
            return
        if memory:
            backend.new_build()
        mine = [
            name
            for name, rows in self.stored.items()
            if any(r.build_id == self.build.id and r.status == "done" for r in rows)
        ]
        paths = sorted(
            (p for p in (self.watch_dir / name for name in mine) if p.is_file()),
            key=lambda p: layer_order(p, self.pattern),
        )
        if len(paths) < len(mine):
            log.warning(
                "build memory: %d stored layer(s) of this build are gone from the folder", len(mine) - len(paths)
            )
        for item in self.pipeline.predictor.predict(paths):
            if getattr(item, "message", None):
                log.warning("build memory: %s", item.message)
            elif self.pipeline.mapper is not None:  # the fine maps' memory learns them again too
                self.pipeline.mapper(item)
        if paths:
            log.info("build memory: learned the %d stored layer(s) of build %d again", len(paths), self.build.id)

    def _is_new(self, path: Path) -> bool:
        name = storable(path.name)
        rows = self.stored.get(name)
        if not rows:
            return True
        now = FileStamp.of(path, digest=False)
        if any(r.stamp is None or r.stamp.same_stat(now) for r in rows):
            return False
        key = (name, now.size, now.mtime)
        if key not in self.digests:
            self.digests[key] = FileStamp.of(path).digest
        return all(r.stamp.digest != self.digests[key] for r in rows)

    def candidates(self) -> list[Path]:
        """Layer files in the folder not stored yet (or written again since), in layer order."""
        files = [
            p
            for p in self.watch_dir.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and self._is_new(p)
        ]
        return sorted(files, key=lambda p: layer_order(p, self.pattern))

    def _settled(self, path: Path) -> bool:
        try:
            first = path.stat()
        except FileNotFoundError:
            return False
        age = time.time() - first.st_mtime
        if age >= self.config.settle:
            return True
        time.sleep(min(self.config.settle - age, 1.0) + 0.005)  # until it would have settled, not longer
        try:
            return path.stat().st_size == first.st_size and time.time() - path.stat().st_mtime >= self.config.settle
        except FileNotFoundError:
            return False

    def _new_build_reason(self, path: Path, number: int | None) -> str | None:
        name = storable(path.name)
        mine = [r for r in self.stored.get(name, []) if r.build_id == self.build.id]
        if mine and all(r.status == "failed" for r in mine):  # a failed layer written again: try it again
            self.build.forget_failed(name)
            self.stored[name] = [r for r in self.stored[name] if r not in mine]
            return None
        first = self.build.first_number()
        if mine and (number is None or first is None or number <= first):
            return f"{name} was written again"
        if mine:  # a later layer's photo taken again: classified again within this build
            log.info("layer %s: its photo was taken again; classified again in build %d", name, self.build.id)
            return None
        if number is not None and first is not None and number <= first:
            return f"layer numbers start again at {number}"
        return None

    def _start_build(self, reason: str) -> None:
        count = len(self.db.builds(self.key, self.machine))
        name = f"{self.config.build or self.watch_dir.name} #{count + 1}"
        build = self.db.new_build(self.key, name, self.options.model_name, self.machine)
        self._patiently(self._use, build)  # stored: switched to whatever the database does next
        new_build = getattr(self.pipeline.predictor.backend, "new_build", None)
        if new_build is not None:  # its first layers are learned afresh
            new_build()
        self.retry.clear()
        log.info("new build %r: %s", name, reason)

    def _remember(self, path: Path, status: str, stamp: FileStamp | None) -> None:
        name = storable(path.name)
        self.stored.setdefault(name, []).append(StoredFile(name, self.build.id, status, stamp))

    def process_ready(self) -> int:
        """Process every complete, unstored layer in order; return how many were finished."""
        finished = 0
        for path in self.candidates():
            name = storable(path.name)
            if not self._settled(path):
                break  # keep layer order: wait for this one before later ones
            previous = self.retry.get(name)
            try:
                now = path.stat()
                if previous and previous[0] == (now.st_size, now.st_mtime) and time.time() < previous[2]:
                    break  # unchanged since the last failed try: wait for the next one
                stamp = FileStamp.of(path)
            except FileNotFoundError:
                break
            number = layer_number(path, self.pattern)
            reason = self._new_build_reason(path, number)
            if reason:
                self._start_build(reason)
            outcome = self._classify(path, stamp)
            if outcome.error is not None:
                changed = previous is None or previous[0] != (stamp.size, stamp.mtime)
                tries = 1 if changed else previous[1] + 1
                if tries < self.config.retries and not outcome.error.startswith(POISON):
                    self.retry[name] = ((stamp.size, stamp.mtime), tries, time.time() + self.config.retry_wait)
                    log.info(
                        "layer %s: unreadable (try %d/%d), will retry: %s",
                        name,
                        tries,
                        self.config.retries,
                        outcome.error,
                    )
                    break
                self._patiently(self.build.add_failed, name, number, outcome.error, stamp)
                self._remember(path, "failed", stamp)
                log.info("layer %s: FAILED after %d tries: %s", name, tries, outcome.error)
            else:
                number = number if number is not None else self._patiently(self.build.next_number)
                self._finish(outcome, number, stamp)  # classified: each database step from here waits out an outage
                self._remember(path, "done", stamp)
            self.retry.pop(name, None)
            finished += 1
        return finished

    def _classify(self, path: Path, stamp: FileStamp) -> LayerOutcome:
        """The layer's outcome; an error in `error`, never raised, except for what stops the
        monitor (an output that cannot be written). A file that killed the monitor POISON_TRIES
        times before is not opened again."""
        name = storable(path.name)
        crashed = self.db.begin_attempt(self.key, self.machine, name, stamp)
        if crashed >= POISON_TRIES:
            if not layer_survives(path, self.options.max_megapixels):
                return LayerOutcome(path, error=f"{POISON} the monitor stopped {crashed} times while classifying it")
            log.info(
                "layer %s: the monitor stopped %d times while classifying it, but not by it: tried again", name, crashed
            )
        try:
            outcome = next(iter(self.pipeline.run([path])))
        except (OutputError, DatabaseError, KeyboardInterrupt):
            with contextlib.suppress(Exception):
                self.db.end_attempt(self.key, self.machine, name)  # the monitor stops, but not because of this layer
            raise
        except Exception as exc:  # noqa: BLE001 - one bad layer must not stop the monitoring of a build
            log.debug("layer %s", name, exc_info=True)
            outcome = LayerOutcome(path, error=f"{path}: {type(exc).__name__}: {exc}"[:500])
        self._patiently(self.db.end_attempt, self.key, self.machine, name)  # this try is over; a retry is a new one
        return outcome

    def _finish(self, outcome: LayerOutcome, number: int, stamp: FileStamp) -> None:
        result = outcome.result
        grade = result.grade  # the pipeline's, with this build's layers before it
        overlay = outcome.files.get("overlay")
        file = storable(result.path.name)
        alert = None
        if grade.grade != "ok":
            alert = Alert.of_layer(number, file, grade, self.build.row.name, self.machine, str(overlay or ""))
        alert_id = self._patiently(self.build.add_layer, number, result, grade, alert, overlay, stamp)
        f = result.fractions
        log.info(
            "layer %5d %s: %s, powder %.3f object %.3f error %.3f (%.2fs)",
            number, file, grade.grade, f["Powder"], f["Object"], f["Error"], result.seconds,
        )  # fmt: skip
        self._patiently(self.raise_pending, alert_id)

    def raise_pending(self, fresh: int | None = None) -> None:
        """Raise every stored alert not raised yet (this layer's, `fresh`, and any a killed run
        left behind), on the sender's pool when the monitor runs, else here."""
        for alert_id, alert in self.db.unraised_alerts(self.key, self.machine):
            if self.sender is not None:
                self.sender.send(alert_id, alert, fresh=alert_id == fresh)
            elif deliver(self.hook, alert, alert_id):
                self.build.mark_raised([alert_id])

    def run(self, exit_when_idle: float | None = None) -> None:
        """Process what is there, then follow file events until stopped (or idle for `exit_when_idle` s)."""
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        events = self.events

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                events.put(event)

        observer = PollingObserver(timeout=0.5) if self.config.poll else Observer()
        observer.schedule(Handler(), str(self.watch_dir), recursive=False)
        observer.start()
        marked = partial(self._patiently, self.build.mark_raised)  # a delivered alert waits out an outage
        self.sender = AlertSender(self.hook, marked, workers=self.config.alert_workers)
        stopped = True
        try:
            with database_errors(self.db.source):
                self._follow(events, exit_when_idle)
            stopped = False
        finally:
            observer.stop()
            observer.join(timeout=5)
            self.sender.close(wait=0 if stopped else None)  # interrupted: unraised alerts wait for the restart
            self.sender = None
            self.lock.release()

    def _patiently(self, step, *args):
        """Run a database step, waiting while the database is away (db.unavailable): one line when it
        goes, tries again with backoff, one line when it is back (once per outage, whichever of the
        monitor's threads meets it). A classified layer waits in memory to be stored, and a delivered
        alert to be marked raised: nothing is lost and nothing is done twice."""
        for tries in itertools.count():
            try:
                done = step(*args)
            except SQLAlchemyError as exc:
                if not unavailable(exc):
                    raise
                with self.outage:
                    if self.away_since is None:
                        self.away_since = time.monotonic()
                        reason = str(exc.orig if isinstance(exc, DBAPIError) else exc).strip().splitlines()[0]
                        log.warning(
                            "database %s unavailable (%s): waiting and trying again, nothing is lost",
                            shown_url(self.db.source),
                            reason[:300],
                        )
                time.sleep(OUTAGE_WAITS[min(tries, len(OUTAGE_WAITS) - 1)])
                continue
            if tries:
                with self.outage:
                    since, self.away_since = self.away_since, None
                if since is not None:
                    waited = time.monotonic() - since
                    log.warning("database %s back after %.0f s: monitoring goes on", shown_url(self.db.source), waited)
                    self._patiently(self.lock.renew)  # a server's restart ended the lock's session
            return done

    def _follow(self, events: queue.Queue, exit_when_idle: float | None) -> None:
        self._patiently(self.raise_pending)
        last_work = last_raise = time.time()
        while True:
            if self._patiently(self.process_ready):
                last_work = time.time()
            elif time.time() - last_raise > RERAISE_EVERY:  # alerts whose hook failed, while no layer comes
                self._patiently(self.raise_pending)
                self._patiently(self.lock.renew)  # and the lock, should a server have restarted
                last_raise = time.time()
            try:
                events.get(timeout=0.25)
                while not events.empty():
                    events.get_nowait()
            except queue.Empty:
                pass
            if exit_when_idle is not None and time.time() - last_work > exit_when_idle and not self.candidates():
                return
