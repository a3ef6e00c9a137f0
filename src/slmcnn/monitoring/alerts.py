"""Alerts: one graded alert per layer that is not ok (grading.py), and where it goes: the log,
alerts.jsonl and a hook command, run on a bounded pool of threads so that a slow hook never holds
up the next layer, nor the alert of a critical one."""

import contextlib
import heapq
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from slmcnn.grading import LayerGrade

log = logging.getLogger(__name__)


@dataclass
class Alert:
    """What a shop is told about one layer: where (build, machine, layer, file, the overlay and the
    regions' tile boxes), how bad (the grade) and why (the message)."""

    layer: int
    file: str
    grade: str  # minor | critical
    message: str
    value: float  # the grade's severity, for ranking
    regions: list[dict] = field(default_factory=list)
    build: str = ""
    machine: str = ""
    overlay: str = ""
    pushed: bool = True  # False for a lone minor tile: logged and written to the journal, no hook run
    rule: str = ""  # what made the grade (the first reason)

    @classmethod
    def of_layer(cls, number: int, file: str, grade: LayerGrade, build="", machine="", overlay="") -> "Alert":
        regions = json.loads(grade.regions_json())  # plain JSON values, as stored and read back
        rule = grade.reasons[0] if grade.reasons else ("a lone Error tile" if grade.lone else "Error tiles")
        return cls(
            number,
            file,
            grade.grade,
            grade.message(),
            grade.severity,
            regions,
            build,
            machine,
            overlay,
            not grade.lone,
            rule,
        )

    def as_dict(self) -> dict:
        return asdict(self)

    def env(self) -> dict[str, str]:
        doc = self.as_dict()
        doc["regions"] = json.dumps(self.regions)
        return {f"SLMCNN_ALERT_{k.upper()}": str(v) for k, v in doc.items()}


@dataclass
class AlertHook:
    """Where a raised alert goes: the log, `journal` (one JSON line each) and `command`, a shell
    command that gets the alert in SLMCNN_ALERT_* variables and `timeout` seconds to finish.

    Delivery is at least once: an alert is marked raised in the database after its hook returns
    with 0, so a monitor killed in between raises it again on restart; a hook that fails or runs
    past `timeout` (it is then killed) has not delivered it. Each carries its database id ("id" in
    the journal, SLMCNN_ALERT_ID for the command), by which a receiver drops a repeat."""

    journal: Path | None = None
    command: str | None = None
    timeout: float = 10.0
    writing: threading.Lock = field(default_factory=threading.Lock, repr=False)  # hooks run on several threads

    def __call__(self, alert: Alert, alert_id: int | None = None) -> None:
        level = logging.WARNING if alert.grade == "critical" else logging.INFO
        log.log(level, "ALERT %s layer %s %s", alert.grade.upper(), alert.layer, alert.message)
        if self.journal:
            with self.writing:
                self.journal.parent.mkdir(parents=True, exist_ok=True)
                with open(self.journal, "a") as handle:
                    handle.write(json.dumps({"id": alert_id, **alert.as_dict()}) + "\n")
        if self.command and alert.pushed:
            env = {**os.environ, **alert.env(), "SLMCNN_ALERT_ID": str(alert_id)}
            code, said = run_hook(self.command, env, self.timeout)
            if code is None:
                raise HookFailed(f"alert command still running after {self.timeout:g} s: stopped, not delivered")
            if code != 0:
                last = said.decode(errors="replace").strip().splitlines()[-1:] or [""]
                raise HookFailed(f"alert command exited {code}" + (f": {last[0][:200]}" if last[0] else ""))


STDERR_TAIL = 4096  # bytes of a hook's stderr kept (its last line is logged): a chatty hook costs no memory


def run_hook(command: str, env: dict[str, str], timeout: float) -> tuple[int | None, bytes]:
    """Run the hook command in a session of its own; its exit code (None when it ran past `timeout`:
    then it and everything it started are killed) and the tail of its stderr."""
    process = subprocess.Popen(
        command, shell=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    tail = bytearray()

    def read() -> None:
        while chunk := process.stderr.read1(65536):
            tail.extend(chunk)
            del tail[:-STDERR_TAIL]

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        code = None
    reader.join(1.0)  # a grandchild that keeps stderr open is not waited for
    return code, bytes(tail)


class HookFailed(Exception):
    """The alert command said it failed (a non-zero exit): the alert is not delivered."""


BACKOFF = (0.5, 1.0, 2.0)  # seconds before each further try of a failing hook


def deliver(hook: Callable[[Alert, int], None], alert: Alert, alert_id: int, backoff=BACKOFF) -> bool:
    """Run the hook, trying again after each pause of `backoff` while it fails; every failure is
    logged. False when it never succeeded: the alert stays unraised."""
    for attempt, pause in enumerate((*backoff, None), start=1):
        try:
            hook(alert, alert_id)
            return True
        except Exception as exc:  # noqa: BLE001 - a broken hook must not stop the monitor
            again = f"trying again in {pause:g} s" if pause is not None else "left unraised: tried again later"
            log.warning("alert %s not delivered (try %d: %s); %s", alert_id, attempt, exc, again)
            if pause is not None:
                time.sleep(pause)
    return False


WORKERS = 4  # hooks running at once, besides the critical alerts that find every worker busy


class AlertSender:
    """Runs the hook on a pool of `workers` threads, critical alerts first and the newest of them
    first, so that a slow hook never holds up the next layer; `mark_raised(ids)` records each
    delivered alert. The critical alert of the layer just stored (`fresh`) that finds every worker
    busy gets a thread of its own at once (at most `workers` such at a time, for a monitor catching
    up on many layers): the hook of a critical layer starts as soon as it is stored, however many
    alerts wait. A hook that fails is tried again
    with backoff and each failure logged; one that keeps failing leaves its alert unraised, queued
    again by the monitor (Monitor.raise_pending: with the next layer, every minute while none comes,
    in a new build and when it starts again)."""

    def __init__(
        self,
        hook: Callable[[Alert, int], None],
        mark_raised: Callable[[list[int]], None],
        backoff=BACKOFF,
        workers: int = WORKERS,
    ):
        self.hook, self.mark_raised, self.backoff, self.workers = hook, mark_raised, backoff, workers
        self.waiting: list[tuple[int, int, Alert]] = []  # a heap: (rank, id, alert)
        self.queued: set[int] = set()
        self.changed = threading.Condition()
        self.idle = self.extra = 0
        self.closing = False
        self.threads = [
            threading.Thread(target=self._work, name=f"slmcnn-alerts-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self.threads:
            thread.start()

    def send(self, alert_id: int, alert: Alert, fresh: bool = False) -> None:
        with self.changed:
            if alert_id in self.queued:
                return
            self.queued.add(alert_id)
            critical = alert.grade == "critical"
            if critical and fresh and self.idle == 0 and self.extra < self.workers:
                self.extra += 1
                extra = threading.Thread(target=self._extra, args=(alert_id, alert), daemon=True)
                self.threads.append(extra)
                extra.start()
                return
            heapq.heappush(self.waiting, ((0, -alert_id) if critical else (1, alert_id), alert_id, alert))
            self.changed.notify()

    def _extra(self, alert_id: int, alert: Alert) -> None:
        try:
            self._deliver(alert_id, alert)
        finally:
            with self.changed:
                self.extra -= 1

    def _work(self) -> None:
        while True:
            with self.changed:
                self.idle += 1
                while not self.waiting and not self.closing:
                    self.changed.wait()
                self.idle -= 1
                if not self.waiting:
                    return
                _, alert_id, alert = heapq.heappop(self.waiting)
            self._deliver(alert_id, alert)

    def _deliver(self, alert_id: int, alert: Alert) -> None:
        if not deliver(self.hook, alert, alert_id, self.backoff):
            with self.changed:
                self.queued.discard(alert_id)  # queued again with the next layer's alerts
            return
        try:
            self.mark_raised([alert_id])
        except Exception as exc:  # noqa: BLE001 - the database went away (a server stopped)
            log.warning("alert %s delivered but not marked raised (%s): it is raised again on restart", alert_id, exc)

    def close(self, wait: float | None = None) -> None:
        """Deliver what is queued (waiting at most `wait` seconds; None: until done), then stop."""
        with self.changed:
            self.closing = True
            self.changed.notify_all()
        deadline = None if wait is None else time.monotonic() + wait
        for thread in list(self.threads):
            thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))
