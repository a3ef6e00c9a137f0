"""Live build monitoring: classify each new layer photo as soon as its file is complete, store the
results transactionally, and raise alerts early enough to stop the build.

Files are taken in layer order (number parsed from the name, else modification time). A layer is
complete when it arrived by an atomic rename, or when its size has not changed for `settle` seconds.
Every finished layer is committed in one transaction with its tiles and alerts, so a monitor killed
at any moment and started again loses nothing, repeats nothing, and picks up what arrived meanwhile.
"""

import json
import os
import queue
import re
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from slmcnn import CLASSES
from slmcnn.images import IMAGE_SUFFIXES, write_png
from slmcnn.predict import LayerFailure, LayerResult, Predictor
from slmcnn.render import overlay
from slmcnn.store import ResultStore


@dataclass
class AlertRules:
    """When to raise an alert; each rule can be switched off with None / False."""

    error_fraction: float | None = 0.02
    persistent_layers: int | None = 3
    near_part: bool = True
    jump: float | None = 0.1
    jump_window: int = 5


@dataclass
class Alert:
    layer: int
    file: str
    rule: str
    message: str
    value: float

    def env(self) -> dict[str, str]:
        return {f"SLMCNN_ALERT_{k.upper()}": str(v) for k, v in asdict(self).items()}


def layer_number(path: Path, pattern: re.Pattern | None) -> int | None:
    """The layer number in a file name: the pattern's first group, or the last number in the stem."""
    if pattern is not None:
        match = pattern.search(path.name)
        return int(match.group(1)) if match else None
    numbers = re.findall(r"\d+", path.stem)
    return int(numbers[-1]) if numbers else None


def evaluate_rules(
    rules: AlertRules,
    number: int,
    file: str,
    grid: np.ndarray,
    fraction: float,
    history: list[tuple[np.ndarray, float]],
) -> list[Alert]:
    """Alerts for one layer given the grids and error fractions of the layers before it (oldest first)."""
    error = grid == CLASSES.index("Error")
    alerts = []
    if rules.error_fraction is not None and fraction >= rules.error_fraction:
        alerts.append(
            Alert(number, file, "error-fraction", f"error fraction {fraction:.3f} >= {rules.error_fraction}", fraction)
        )
    if rules.persistent_layers and len(history) >= rules.persistent_layers - 1:
        recent = [g for g, _ in history[-(rules.persistent_layers - 1) :]] if rules.persistent_layers > 1 else []
        persistent = error.copy()
        for g in recent:
            persistent &= (g == CLASSES.index("Error")) if g.shape == grid.shape else False
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
        part = grid == CLASSES.index("Object")
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


class Monitor:
    """Watch a folder, classify new layers in order, store them, raise alerts."""

    def __init__(
        self,
        watch_dir: Path,
        store: ResultStore,
        predictor: Predictor,
        rules: AlertRules,
        out: Path | None = None,
        pattern: str | None = None,
        settle: float = 0.5,
        poll: bool = False,
        on_alert: str | None = None,
        alert_timeout: float = 10.0,
        retries: int = 3,
        log=print,
    ):
        self.watch_dir = watch_dir
        self.store = store
        self.predictor = predictor
        self.rules = rules
        self.out = out
        self.pattern = re.compile(pattern) if pattern else None
        self.settle = settle
        self.poll = poll
        self.on_alert = on_alert
        self.alert_timeout = alert_timeout
        self.retries = retries
        self.log = log
        self.build_id = store.build(str(watch_dir.resolve()), predictor.model_name)
        self.attempts: dict[str, int] = {}
        self.events: queue.Queue = queue.Queue()

    def candidates(self) -> list[Path]:
        """Layer files in the folder not yet stored, in layer order."""
        done = self.store.finished_files(self.build_id)
        files = [
            p
            for p in self.watch_dir.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.name not in done
        ]
        return sorted(files, key=self._order)

    def _order(self, path: Path):
        number = layer_number(path, self.pattern)
        return (0, number, path.name) if number is not None else (1, path.stat().st_mtime, path.name)

    def _settled(self, path: Path) -> bool:
        try:
            first = path.stat()
        except FileNotFoundError:
            return False
        if time.time() - first.st_mtime >= self.settle:
            return True
        time.sleep(min(self.settle, 0.2))
        try:
            return path.stat().st_size == first.st_size and time.time() - path.stat().st_mtime >= self.settle
        except FileNotFoundError:
            return False

    def process_ready(self) -> int:
        """Process every complete, unstored layer in order; return how many were finished."""
        finished = 0
        for path in self.candidates():
            if not self._settled(path):
                break  # keep layer order: wait for this one before later ones
            number = layer_number(path, self.pattern)
            result = next(iter(self.predictor.predict([path])))
            if isinstance(result, LayerFailure):
                tries = self.attempts[path.name] = self.attempts.get(path.name, 0) + 1
                if tries < self.retries:
                    self.log(
                        f"layer {path.name}: unreadable (try {tries}/{self.retries}), will retry: {result.message}"
                    )
                    break
                self.store.add_failed(self.build_id, path.name, number, result.message)
                self.log(f"layer {path.name}: FAILED after {tries} tries: {result.message}")
                finished += 1
                continue
            self._finish(result, number if number is not None else self.store.next_number(self.build_id))
            finished += 1
        return finished

    def _finish(self, result: LayerResult, number: int) -> None:
        history = self.store.history(self.build_id, max(self.rules.persistent_layers or 1, self.rules.jump_window))
        grid = result.tile_classes
        fraction = result.fractions["Error"]
        alerts = evaluate_rules(self.rules, number, result.path.name, grid, fraction, history)
        overlay_path = None
        if self.out:
            self.out.mkdir(parents=True, exist_ok=True)
            overlay_path = self.out / f"{result.path.stem}.overlay.png"
            write_png(overlay_path, overlay(result.image, result.class_map))
        self.store.add_layer(self.build_id, number, result, [asdict(a) for a in alerts], overlay_path)
        f = result.fractions
        self.log(
            f"layer {number:5d} {result.path.name}: powder {f['Powder']:.3f} object {f['Object']:.3f} "
            f"error {f['Error']:.3f} ({result.seconds:.2f}s)"
        )
        self.raise_pending()

    def raise_pending(self) -> None:
        """Raise every stored alert not raised yet: this layer's, and any a killed run left behind."""
        for row in self.store.unraised_alerts(self.build_id):
            self._raise(Alert(**{k: v for k, v in row.items() if k != "id"}))
            self.store.mark_raised([row["id"]])

    def _raise(self, alert: Alert) -> None:
        self.log(f"ALERT layer {alert.layer} [{alert.rule}] {alert.message}")
        if self.out:
            with open(self.out / "alerts.jsonl", "a") as handle:
                handle.write(json.dumps(asdict(alert)) + "\n")
        if self.on_alert:
            try:
                subprocess.run(
                    self.on_alert,
                    shell=True,
                    env={**os.environ, **alert.env()},
                    timeout=self.alert_timeout,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired:
                self.log(
                    f"--on-alert command still running after {self.alert_timeout}s: left behind, monitoring goes on"
                )

    def run(self, exit_when_idle: float | None = None) -> None:
        """Process what is there, then follow file events until stopped (or idle for `exit_when_idle` s)."""
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        events = self.events

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                events.put(event)

        observer = PollingObserver(timeout=0.5) if self.poll else Observer()
        observer.schedule(Handler(), str(self.watch_dir), recursive=False)
        observer.start()
        self.raise_pending()
        last_work = time.time()
        try:
            while True:
                if self.process_ready():
                    last_work = time.time()
                try:
                    events.get(timeout=0.25)
                    while not events.empty():
                        events.get_nowait()
                except queue.Empty:
                    pass
                if exit_when_idle is not None and time.time() - last_work > exit_when_idle and not self.candidates():
                    break
        finally:
            observer.stop()
            observer.join(timeout=5)


__all__ = ["Monitor", "AlertRules", "Alert", "evaluate_rules", "layer_number"]
