"""Alerts: the rules that raise them, and where a raised alert goes (the log, alerts.jsonl, a hook)."""

import json
import logging
import math
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from slmcnn.errors import SettingsError
from slmcnn.labels import ERROR, OBJECT

log = logging.getLogger(__name__)


@dataclass
class AlertRules:
    """When to raise an alert; each rule can be switched off with None / False."""

    error_fraction: float | None = 0.02
    persistent_layers: int | None = 3
    near_part: bool = True
    jump: float | None = 0.1
    jump_window: int = 5

    def __post_init__(self):
        for name, value, low in (("error_fraction", self.error_fraction, 0), ("jump", self.jump, 0)):
            ok = value is None or (isinstance(value, int | float) and math.isfinite(value) and value >= low)
            if not ok:
                raise SettingsError(
                    f"the {name.replace('_', ' ')} alert needs a number of 0 or more, or none to turn it off (got {value!r})"
                )
        for name, value in (("persistent_layers", self.persistent_layers), ("jump_window", self.jump_window)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise SettingsError(
                    f"the {name.replace('_', ' ')} of the alert rules must be 1 or more, or none (got {value!r})"
                )

    @property
    def history_needed(self) -> int:
        return max(self.persistent_layers or 1, self.jump_window)


@dataclass
class Alert:
    layer: int
    file: str
    rule: str
    message: str
    value: float

    def as_dict(self) -> dict:
        return asdict(self)

    def env(self) -> dict[str, str]:
        return {f"SLMCNN_ALERT_{k.upper()}": str(v) for k, v in asdict(self).items()}


def evaluate_rules(
    rules: AlertRules,
    number: int,
    file: str,
    grid: np.ndarray,
    fraction: float,
    history: list[tuple[np.ndarray, float]],
) -> list[Alert]:
    """Alerts for one layer given the tile classes and error fractions of the layers before it
    (oldest first). Ignored tiles (NOT_A_CLASS) are neither error nor part."""
    error = grid == ERROR
    alerts = []
    if rules.error_fraction is not None and fraction >= rules.error_fraction:
        alerts.append(
            Alert(number, file, "error-fraction", f"error fraction {fraction:.3f} >= {rules.error_fraction}", fraction)
        )
    if rules.persistent_layers and len(history) >= rules.persistent_layers - 1:
        recent = [g for g, _ in history[-(rules.persistent_layers - 1) :]] if rules.persistent_layers > 1 else []
        persistent = error.copy()
        for g in recent:
            persistent &= (g == ERROR) if g.shape == grid.shape else False
        if persistent.any():
            cells = [tuple(map(int, c)) for c in np.argwhere(persistent)]
            alerts.append(
                Alert(
                    number,
                    file,
                    "persistent-error",
                    f"error at the same tile for {rules.persistent_layers} layers: cells {cells[:5]}",
                    len(cells),
                )
            )
    if rules.near_part and error.any():
        part = grid == OBJECT
        grown = part.copy()
        grown[1:] |= part[:-1]
        grown[:-1] |= part[1:]
        grown[:, 1:] |= part[:, :-1]
        grown[:, :-1] |= part[:, 1:]
        touching = int((error & grown).sum())
        if touching:
            alerts.append(Alert(number, file, "error-near-part", f"{touching} error tile(s) touch a part", touching))
    if rules.jump is not None and history:
        baseline = float(np.mean([f for _, f in history[-rules.jump_window :]]))
        if fraction - baseline >= rules.jump:
            alerts.append(
                Alert(
                    number,
                    file,
                    "error-jump",
                    f"error fraction jumped {baseline:.3f} -> {fraction:.3f}",
                    fraction - baseline,
                )
            )
    return alerts


@dataclass
class AlertHook:
    """Where a raised alert goes: the log, `journal` (one JSON line each) and `command`, a shell
    command that gets the alert in SLMCNN_ALERT_* variables and `timeout` seconds to finish.

    Delivery is at least once: an alert is marked raised in the database after its hook returns, so
    a monitor killed in between raises it again on restart. Each carries its database id ("id" in
    the journal, SLMCNN_ALERT_ID for the command), by which a receiver drops a repeat."""

    journal: Path | None = None
    command: str | None = None
    timeout: float = 10.0

    def __call__(self, alert: Alert, alert_id: int | None = None) -> None:
        log.info("ALERT layer %s [%s] %s", alert.layer, alert.rule, alert.message)
        if self.journal:
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            with open(self.journal, "a") as handle:
                handle.write(json.dumps({"id": alert_id, **alert.as_dict()}) + "\n")
        if self.command:
            try:
                done = subprocess.run(
                    self.command,
                    shell=True,
                    env={**os.environ, **alert.env(), "SLMCNN_ALERT_ID": str(alert_id)},
                    timeout=self.timeout,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            except subprocess.TimeoutExpired:
                log.warning("alert command still running after %ss: left behind, monitoring goes on", self.timeout)
                return
            if done.returncode != 0:
                said = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
                raise HookFailed(f"alert command exited {done.returncode}" + (f": {said[0][:200]}" if said[0] else ""))


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


class AlertSender:
    """Runs the hook on its own thread, in the order alerts were stored, so a slow hook never holds
    up the next layer; `mark_raised(ids)` records each delivered alert. A hook that fails is tried
    again with backoff and each failure logged; one that keeps failing leaves its alert unraised,
    and it is queued again with the next layer's alerts (and when the monitor starts again)."""

    def __init__(self, hook: Callable[[Alert, int], None], mark_raised: Callable[[list[int]], None], backoff=BACKOFF):
        self.hook, self.mark_raised, self.backoff = hook, mark_raised, backoff
        self.queue: queue.Queue = queue.Queue()
        self.queued: set[int] = set()
        self.thread = threading.Thread(target=self._run, name="slmcnn-alerts", daemon=True)
        self.thread.start()

    def send(self, alert_id: int, alert: Alert) -> None:
        if alert_id not in self.queued:
            self.queued.add(alert_id)
            self.queue.put((alert_id, alert))

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            alert_id, alert = item
            if not deliver(self.hook, alert, alert_id, self.backoff):
                self.queued.discard(alert_id)  # queued again with the next layer's alerts
                continue
            try:
                self.mark_raised([alert_id])
            except Exception as exc:  # noqa: BLE001 - the database went away (a server stopped)
                log.warning(
                    "alert %s delivered but not marked raised (%s): it is raised again on restart", alert_id, exc
                )

    def close(self, wait: float | None = None) -> None:
        """Deliver what is queued (waiting at most `wait` seconds; None: until done), then stop."""
        self.queue.put(None)
        self.thread.join(wait)
