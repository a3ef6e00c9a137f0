"""Export labelled tiles (class folders + split.csv with each tile's build and layer) and fine-tune
the current model on them in a background `slmcnn train --init` process, then compare old and new
on labelled layers held out from the fine-tune."""

import csv
import logging
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from slmcnn import images
from slmcnn.app.sources import photo_changed, straightened, tile_patch
from slmcnn.app.store import LabelStore
from slmcnn.camera import CameraCalibration
from slmcnn.constants import CLASSES
from slmcnn.data import SPLIT_COLUMNS, SPLIT_FILE
from slmcnn.errors import SlmcnnError
from slmcnn.files import fresh_folder
from slmcnn.tiles import TileGeometry

log = logging.getLogger(__name__)
EPOCH_LINE = re.compile(r"^epoch\s+(\d+)\s+loss ([\d.]+)\s+acc ([\d.]+)\s+val_loss ([\d.]+)\s+val_acc ([\d.]+)")


@dataclass
class Export:
    folder: Path
    tiles: int
    layers: int
    counts: dict[str, int]
    splits: dict[str, int] = field(default_factory=dict)
    replaced: list[str] = field(default_factory=list)  # layers left out: their photo files changed


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def layer_splits(groups: list[str], seed: int = 0) -> dict[str, str]:
    """Held-out layers for a fine-tune: about a fifth for the comparison (test), a tenth for early
    stopping (val), at least one each; the rest train."""
    if len(groups) < 3:
        raise SlmcnnError(f"labels on {len(groups)} layer(s): label tiles on at least 3 layers to fine-tune")
    order = [groups[i] for i in np.random.default_rng(seed).permutation(len(groups))]
    n_test, n_val = max(1, round(0.2 * len(groups))), max(1, round(0.1 * len(groups)))
    return {g: "test" if i < n_test else "val" if i < n_test + n_val else "train" for i, g in enumerate(order)}


def export_labels(store: LabelStore, out: Path, held_out: bool = False, seed: int = 0) -> Export:
    """Every labelled tile as out/<Class>/<build>_<layer>_r<row>c<col>.png and out/split.csv; with
    `held_out`, the split column names the layers kept out of training (else `slmcnn train` splits
    by layer itself)."""
    labels = store.labels()
    if not labels:
        raise SlmcnnError("no labelled tiles to export: label some tiles first")
    by_layer: dict[tuple[str, str], list] = {}
    for label in labels:
        by_layer.setdefault((label.ref.set_key, label.ref.layer), []).append(label)
    groups = sorted({f"{v[0].ref.build}/{v[0].ref.number}" for v in by_layer.values()})
    roles = layer_splits(groups, seed) if held_out else {}
    for name in CLASSES:
        (out / name).mkdir(parents=True, exist_ok=True)
    rows, counts, replaced = [], dict.fromkeys(CLASSES, 0), []
    for tiles in by_layer.values():
        ref = tiles[0].ref
        if photo_changed(ref):  # cut from another photo, its tiles would carry wrong labels
            replaced.append(ref.layer)
            continue
        camera = CameraCalibration(**ref.camera) if ref.camera else None
        image, geometry = straightened(ref.image, camera), TileGeometry.from_json(ref.geometry)
        group = f"{ref.build}/{ref.number}"
        for t in tiles:
            name = CLASSES[t.cls]
            relative = f"{name}/{_safe(ref.build)}_{_safe(ref.number)}_r{t.row}c{t.col}.png"
            images.write_png(out / relative, tile_patch(image, geometry, t.row, t.col))
            rows.append([relative, name, ref.build, ref.number, t.row, t.col, roles.get(group, "")])
            counts[name] += 1
    with open(out / SPLIT_FILE, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SPLIT_COLUMNS)
        writer.writerows(rows)
    splits = {s: sum(1 for r in rows if r[-1] == s) for s in ("train", "val", "test")} if held_out else {}
    if replaced:
        log.warning("not exported, their photos were replaced since they were labelled: %s", ", ".join(replaced))
    return Export(out, len(rows), len(by_layer) - len(replaced), counts, splits, replaced)


REHEARSAL_TILES = 150  # tiles of the shipped training distribution mixed into a fine-tune (a third per class)
REHEARSAL_LAYERS = 12


def add_rehearsal(export: Export, cache: Path, tiles: int = REHEARSAL_TILES, seed: int = 0) -> int:
    """Mix `tiles` tiles of the distribution the shipped model was trained on (a synthetic build of
    the generator's default settings, made once into `cache`) into the export's training split,
    as many of each class as there are: a fine-tune on a few labels of a new camera then keeps
    the Error it knew. Returns the tiles added."""
    from slmcnn.synth import SynthSettings, generate_build

    build = cache / f"rehearsal-{seed}"
    if not (build / "patches" / SPLIT_FILE).is_file():
        generate_build(SynthSettings(layers=REHEARSAL_LAYERS, seed=seed, size=768), build, force=True, workers=1)
    with open(build / "patches" / SPLIT_FILE, newline="") as handle:
        rows = list(csv.DictReader(handle))
    rng = np.random.default_rng(seed)
    picked = []
    for name in CLASSES:
        mine = [r for r in rows if r["label"] == name]
        take = min(len(mine), tiles // len(CLASSES))
        picked += [mine[i] for i in rng.choice(len(mine), take, replace=False)] if take else []
    with open(export.folder / SPLIT_FILE, "a", newline="") as handle:
        writer = csv.writer(handle)
        for row in picked:
            relative = f"{row['label']}/rehearsal_{Path(row['path']).name}"
            (export.folder / relative).write_bytes((build / "patches" / row["path"]).read_bytes())
            writer.writerow([relative, row["label"], "rehearsal", row["layer"], row["row"], row["col"], "train"])
    export.splits["rehearsal"] = len(picked)
    return len(picked)


MIN_LAYERS, MIN_ERROR_TILES = 3, 10  # fewer held-out layers or Error tiles: the comparison is a guess
ANCHOR = 0.01  # L2-SP toward the model in use: measured to keep Error recall (benchmarks/README.md)


def held_out_comparison(old: Path, new: Path, export: Path) -> dict:
    """The old and the new model on the export's held-out (test) layers, per class: recall (of
    the tiles labelled that class, the share called so) and false alarms (of the tiles labelled
    Powder or Object, how many are called Error), with the counts they rest on and warnings where
    they are too few to trust."""
    from slmcnn.backends import TorchBackend
    from slmcnn.checkpoint import open_model as load_model
    from slmcnn.data import load_patches, load_source

    table = load_source(export / SPLIT_FILE)
    test = table.subset(np.array(table.splits or [""] * len(table)) == "test")
    truth = np.asarray(test.labels)
    counts = {name: int((truth == k).sum()) for k, name in enumerate(CLASSES)}
    result: dict = {"tiles": len(test), "layers": len(set(test.groups)), "counts": counts, "models": {}}
    sound = truth != CLASSES.index("Error")
    patches = load_patches(test, resize=True) if len(test) else None
    for name, path in (("old", old), ("new", new)):
        predicted = TorchBackend(load_model(path), "fp32").probabilities(patches).argmax(1) if len(test) else truth
        result["models"][name] = {
            "accuracy": float((predicted == truth).mean()) if len(test) else None,
            "recall": {
                c: (float((predicted[truth == k] == k).mean()) if counts[c] else None) for k, c in enumerate(CLASSES)
            },
            "false_alarms": int((predicted[sound] == CLASSES.index("Error")).sum()),
            "sound_tiles": int(sound.sum()),
        }
    warnings = []
    if result["layers"] < MIN_LAYERS:
        warnings.append(
            f"only {result['layers']} held-out layer(s): label tiles on more layers (>= {MIN_LAYERS} held out, about 15 labelled)"
        )
    if counts["Error"] < MIN_ERROR_TILES:
        warnings.append(
            f"only {counts['Error']} held-out Error tile(s): the Error recall is a guess (>= {MIN_ERROR_TILES} needed)"
        )
    result["warnings"] = warnings
    return result


@dataclass
class FineTuneState:
    state: str = "idle"  # idle | refused | running | done | failed
    epoch: int = 0
    epochs: int = 0
    started: float = 0.0
    seconds: float = 0.0
    log: list[str] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    run: str = ""
    export: dict = field(default_factory=dict)
    comparison: dict = field(default_factory=dict)
    message: str = ""

    def to_json(self) -> dict:
        return {**asdict(self), "log": self.log[-20:]}


LOG_LINES, LINE_CHARS = 200, 1000  # of a fine-tune's output kept


class FineTune:
    """One fine-tune at a time, in a background process whose output is followed line by line."""

    def __init__(self, work: Path, anchor: float = ANCHOR, rehearsal: int = REHEARSAL_TILES):
        self.work, self.state, self.anchor, self.rehearsal = work, FineTuneState(), anchor, rehearsal
        self._lock, self._process = threading.Lock(), None

    def start(self, store: LabelStore, model: Path, epochs: int, lr: float, batch: int = 32) -> FineTuneState:
        with self._lock:
            if self.state.state == "running":
                raise SlmcnnError("a fine-tune is running already")
            run = fresh_folder(self.work, "finetune")
            try:
                export = export_labels(store, run / "data", held_out=True)
            except SlmcnnError as exc:  # too few labels or layers: the page says why, until the next try
                shutil.rmtree(run, ignore_errors=True)
                self.state = FineTuneState("refused", message=str(exc))
                raise
            self.state = FineTuneState("running", 0, epochs, time.time(), run=str(run))
            self.state.export = {**asdict(export), "folder": str(export.folder)}
            command = [
                sys.executable, "-u", "-m", "slmcnn", "train", str(export.folder), "--init", str(model),
                "--out", str(run / "model"), "--epochs", str(epochs), "--lr", str(lr), "--batch", str(batch),
                "--patience", str(max(3, epochs // 3)), "--anchor", str(self.anchor), "--quiet",
            ]  # fmt: skip
            threading.Thread(target=self._run, args=(command, export, model, run), daemon=True).start()
            return self.state

    def _run(self, command: list[str], export: Export, old: Path, run: Path) -> None:
        """Mix the rehearsal tiles in (the first time, a synthetic build is made), train, compare."""
        state = self.state
        try:
            if self.rehearsal:
                state.log.append(f"mixing {self.rehearsal} tiles of the shipped training distribution in")
                added = add_rehearsal(export, self.work / "rehearsal", self.rehearsal)
                state.export["splits"] = dict(export.splits, rehearsal=added)
            with self._lock:
                process = self._process = subprocess.Popen(
                    command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
                )
        except Exception as exc:  # noqa: BLE001 - the page must say it, not leave "running"
            state.state, state.message = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("fine-tune start")
            return
        self._follow(process, old, run)

    def _follow(self, process: subprocess.Popen, old: Path, run: Path) -> None:
        state = self.state
        for line in process.stdout:
            line = line.rstrip()[:LINE_CHARS]
            state.log.append(line)
            del state.log[:-LOG_LINES]  # a chatty run costs no memory: the page shows the last 20
            match = EPOCH_LINE.match(line)
            if match:
                epoch, loss, acc, val_loss, val_acc = match.groups()
                state.epoch = int(epoch)
                state.history.append({"epoch": int(epoch), "loss": float(loss), "val_accuracy": float(val_acc)})
            state.seconds = time.time() - state.started
        code = process.wait()
        state.seconds = time.time() - state.started
        new = run / "model" / "model.safetensors"
        if code != 0 or not new.is_file():
            state.state, state.message = "failed", (state.log[-1] if state.log else f"exit code {code}")
            return
        try:
            state.comparison = held_out_comparison(old, new, Path(state.export["folder"]))
            state.state = "done"
        except Exception as exc:  # a failed comparison must not hide the trained model
            state.state, state.message = "done", f"comparison failed: {exc}"
            log.exception("fine-tune comparison")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
