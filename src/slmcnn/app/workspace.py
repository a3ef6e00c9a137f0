"""The app's state: the databases and folders it was given, the sets of layers in them, the current
model (and its backend), the camera, the label store and the fine-tune job."""

import io
import logging
import shutil
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from slmcnn.app.finetune import FineTune
from slmcnn.app.proposals import Proposal, propose
from slmcnn.app.sources import (
    BuildSet,
    Cache,
    FolderSet,
    LayerData,
    NotFound,
    PhotoChanged,
    straightened,
    tile_patch,
)
from slmcnn.app.store import LabelStore
from slmcnn.camera import Camera, CameraCalibration
from slmcnn.constants import CLASSES
from slmcnn.errors import SettingsError, SlmcnnError
from slmcnn.files import atomic_path, describe, resolved
from slmcnn.images import IMAGE_SUFFIXES
from slmcnn.labels import ERROR, POWDER
from slmcnn.monitoring.db import Database
from slmcnn.monitoring.db.connection import database_url
from slmcnn.teaching import Lesson, Lessons, box_mask, lessons_folder

log = logging.getLogger(__name__)
PROPOSAL_LAYERS = 60  # layers a proposal looks at: enough to spread labels, few enough to classify at once


@dataclass
class AppConfig:
    dbs: list[Path] = field(default_factory=list)
    data: list[Path] = field(default_factory=list)
    model: Path | None = None
    camera: Path | None = None
    labels: Path | None = None  # default: beside the first database, else ./slmcnn-app/labels.sqlite
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    user: str = ""
    lessons: Path | None = None  # reviews taught to the fine maps (default: <camera>.lessons, else in the work folder)

    @property
    def labels_path(self) -> Path:
        if self.labels:
            return Path(self.labels)
        if self.dbs and "://" not in str(self.dbs[0]):
            db = Path(self.dbs[0])
            return db.with_name(f"{db.stem}.labels.sqlite")
        return Path("slmcnn-app") / "labels.sqlite"

    @property
    def work(self) -> Path:
        """Where exports, fine-tunes and the current model go: beside the labels database."""
        return self.labels_path.with_name(f"{self.labels_path.stem}-app")

    @property
    def lessons_path(self) -> Path:
        """Where a review's lesson goes: the camera's lessons, which every build with that camera
        takes in (monitor --camera), else the work folder's (give the monitor --lessons)."""
        return lessons_folder(self.camera, self.lessons) or self.work / "lessons"


def shown_name(build) -> str:
    """A build as the app lists it: its name, and the machine it came from when the monitor named one."""
    return f"{build.name} ({build.machine})" if build.machine else build.name


def lesson_source(key: str, alert_id: int) -> str:
    """What taught a lesson: a review of this alert of this set (its stable key)."""
    return f"app {key} alert {alert_id}"


def inside(path: Path, roots: list[Path]) -> bool:
    """True when `path` (resolved, symbolic links followed) lies in one of `roots`."""
    path = resolved(path)
    return any(path == r or r in path.parents for r in (resolved(root) for root in roots))


class Workspace:
    def __init__(self, config: AppConfig):
        self.config = config
        self.roots = [Path(d).resolve() for d in config.data]
        for root in self.roots:
            if not root.is_dir():
                raise SettingsError(f"--data {root}: no such folder")
        self.store = LabelStore(config.labels_path)
        self.work = config.work
        self.finetune = FineTune(self.work)
        self.setup = self._camera(config.camera)
        self.camera_file: Path | None = None  # a profile rebuilt for a model made current
        self.images, self.predictions, self.jpegs, self.recurrence = Cache(16), Cache(64), Cache(64), Cache(16)
        self._model_lock = threading.Lock()
        self.load_model(config.model or self.store.current_model())
        self.databases = []
        for db in config.dbs:
            if "://" not in str(db) and not Path(db).is_file():
                raise SettingsError(f"--db {db}: no such database file")
            self.databases.append((database_url(db), Database(db)))
        self.folders: list[FolderSet] = []
        for root in self.roots:
            for candidate in (root, root / "layers"):
                if candidate.is_dir() and any(p.is_file() for p in candidate.iterdir()):
                    folder = FolderSet(f"f{len(self.folders)}", candidate, self.camera)
                    if folder.count():
                        self.folders.append(folder)
                        break

    @staticmethod
    def _camera(path: Path | None) -> Camera:
        """The app's Camera: a camera.json's, judging one photo at a time (no build memory)."""
        from slmcnn.profile import open_camera

        return open_camera(path, adapt=0)

    @property
    def camera(self) -> CameraCalibration | None:
        """The geometry that straightens the photos (None: they are the bed)."""
        return self.setup.geometry

    @property
    def profile(self):
        """The camera profile (profile.CameraProfile), if the camera has one."""
        return self.setup.profile

    # the model
    def load_model(self, path: str | Path | None) -> None:
        """Use a model: with the camera profile, the backend the monitor and predict-layer use (one
        photo at a time, no build memory); a profile of other weights is not applied, and
        `camera_note` says why."""
        from slmcnn.backends import create_engine
        from slmcnn.checkpoint import open_model

        model = open_model(path)
        camera, self.camera_note = self.setup, None
        if camera.profile is not None:
            try:
                camera.profile.feature_net(model)
            except SlmcnnError as exc:
                camera, self.camera_note = Camera(camera.geometry), f"camera profile not applied: {exc}"
                log.warning("%s", self.camera_note)
        engine = create_engine(model, "torch", camera=camera)
        with self._model_lock:
            self.model, self.backend = model, engine.backend
            self.predictions.clear()

    def use_camera(self, path: Path) -> None:
        """Straighten and judge with this camera.json from now on (the app's folders too)."""
        self.setup = self._camera(path)
        for folder in self.folders:
            folder.camera = self.camera
        self.images.clear()
        self.jpegs.clear()
        self.load_model(self.model_path)

    def _rebuild_profile(self, model_path: Path) -> Path | None:
        """The camera profile learned again with a new model from the good frames it was built
        from (camera.json keeps their paths), written beside the current model; None, and
        `camera_note` says why, when they are gone."""
        from slmcnn.checkpoint import open_model
        from slmcnn.profile import build_profile, save_camera

        frames = [Path(f) for f in self.profile.meta.get("good_frames", [])]
        missing = [f for f in frames if not f.is_file()]
        if not frames or missing:
            why = (
                f"{len(missing)} of its good frames are gone ({missing[0]})"
                if missing
                else "it does not list its good frames"
            )
            self.camera_note = (
                f"camera profile not rebuilt for the new model, so not applied: {why}; run slmcnn calibrate "
                "with good frames"
            )
            return None
        sensitivity = self.profile.meta.get("error_threshold")
        profile = build_profile(frames, self.profile.calibration, open_model(model_path), error_threshold=sensitivity)
        if self.camera is None and self.setup.bed_mm is not None:  # a full-frame camera's size, as calibrate keeps it
            profile.meta["bed_mm"] = self.setup.bed_mm
        target = self.work / "camera.json"
        save_camera(target, profile.calibration, profile, force=True, photo=self.setup.photo)
        self.setup = replace(self.setup, profile=profile)
        return target

    @property
    def model_path(self) -> Path:
        return Path(self.model.source)

    def make_current(self, new: Path, who: str) -> Path:
        """Copy a fine-tuned model to work/current.safetensors (the file monitors are pointed at), use it."""
        target = self.work / "current.safetensors"
        with atomic_path(target) as temporary:  # a name of its own: two at once never mix their bytes
            shutil.copyfile(new, temporary)
        self.store.made_current(str(target), str(new), who)
        self.camera_note = None
        self.camera_file = self._rebuild_profile(target) if self.profile is not None else None
        rebuilt = self.camera_note
        self.load_model(target)
        self.camera_note = rebuilt or self.camera_note  # why it was not rebuilt says more than "not applied"
        return target

    # sets and layers
    def sets(self) -> list:
        found = []
        for d, (url, db) in enumerate(self.databases):
            found += [BuildSet(f"b{d}-{b.id}", db, url, b.id, shown_name(b), b) for b in db.builds()]
        return found + self.folders

    def get_set(self, set_id: str):
        for s in self.sets():
            if s.id == set_id:
                return s
        raise NotFound(f"no set {set_id!r}")

    def photo_folders(self, depth: int = 2, most: int = 200) -> list[dict]:
        """The folders under the --data folders (`depth` levels down) that hold photos, each as the
        open box takes it (relative to the first --data folder, else whole) with its photo count:
        the operator picks one rather than typing its name. Hidden folders and links are not followed."""
        found, level = [], [(root, 0) for root in self.roots]
        while level and len(found) < most:
            folder, down = level.pop(0)
            try:
                entries = sorted(folder.iterdir())
            except OSError:  # unreadable: nothing to offer there
                continue
            photos = sum(1 for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if photos:
                shown = folder.relative_to(self.roots[0]) if folder.is_relative_to(self.roots[0]) else folder
                found.append({"folder": str(shown), "photos": photos})
            if down < depth:
                level += [
                    (p, down + 1) for p in entries if p.is_dir() and not (p.is_symlink() or p.name.startswith("."))
                ]
        return found

    def open_folder(self, folder: str) -> FolderSet:
        """A folder of photos as a set to label; only inside the --data folders."""
        if not self.roots:
            raise PermissionError("no --data folder was given: the app opens no folders")
        if "\0" in folder:  # no path holds one (the operating system would refuse it)
            raise NotFound(f"{folder!r:.80}: no such folder")
        path = Path(folder)
        path = path if path.is_absolute() else self.roots[0] / path
        try:
            if not inside(path, self.roots):
                raise PermissionError(f"{folder}: outside the --data folders")
            path = resolved(path)
        except PermissionError:
            raise
        except OSError as exc:  # a loop of symbolic links
            raise NotFound(describe(exc, folder)) from None
        if not path.is_dir():
            raise NotFound(f"{folder}: no such folder")
        for existing in self.folders:
            if existing.folder == path:
                return existing
        opened = FolderSet(f"f{len(self.folders)}", path, self.camera)
        if not opened.count():
            raise NotFound(f"{folder}: no photos in it")
        self.folders.append(opened)
        return opened

    def predict(self, path: Path, camera: CameraCalibration | None):
        """A folder layer's result with the current model (cached), and its anomaly scores."""

        def run():
            from slmcnn.pipeline import RunOptions, run_layers

            options = RunOptions(camera=camera, workers=1, model_name=self.model_path.name)
            outcome = next(run_layers([path], self.backend, options, model=self.model))
            if outcome.error:
                raise SlmcnnError(outcome.error)
            return outcome.result, outcome.result.anomaly

        stat = path.stat()
        return self.predictions.get((str(path), stat.st_mtime, str(self.model_path)), run)

    def layer(self, set_id: str, index: int) -> LayerData:
        s = self.get_set(set_id)
        return s.layer(index, self)

    def image(self, data: LayerData) -> np.ndarray:
        """The photo a result came from, straightened; refused once its file holds another photo."""
        if data.photo_changed:
            raise PhotoChanged(
                f"{data.ref.layer}: the file now holds another photo than the one this layer was classified from "
                "(a later build wrote the same name); its tiles cannot be labelled or explained from it"
            )
        key = (data.ref.image, str(data.ref.camera))
        return self.images.get(key, lambda: straightened(data.ref.image, data.camera))

    def jpeg(self, data: LayerData) -> bytes:
        if data.photo_changed:  # what the monitor kept of the photo it classified
            if data.thumbnail is None:
                raise PhotoChanged(f"{data.ref.layer}: its photo was replaced and no copy of it was kept")
            return data.thumbnail

        def encode():
            buffer = io.BytesIO()
            Image.fromarray(self.image(data)).save(buffer, format="JPEG", quality=90)
            return buffer.getvalue()

        return self.jpegs.get((data.ref.image, str(data.ref.camera)), encode)

    def explain_tile(self, data: LayerData, row: int, col: int) -> tuple[bytes, dict]:
        """A PNG of the tile's |IG| attribution for its predicted class, and what it explains."""
        from matplotlib import colormaps

        from slmcnn.explain import explain

        patch = tile_patch(self.image(data), data.geometry, row, col)
        with self._model_lock:
            model = self.model
        (e,) = explain(model, patch[None])
        heat = np.abs(e.attribution).sum(-1)
        norm = np.clip(heat / (np.percentile(heat, 99.5) + 1e-12), 0, 1)
        rgba = (colormaps["inferno"](norm) * 255).astype(np.uint8)
        rgba[..., 3] = (norm * 230).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
        return buffer.getvalue(), {"target": CLASSES[e.target], "delta": e.delta, "probability": e.probability}

    def proposals(self, set_id: str, count: int, most_layers: int = PROPOSAL_LAYERS) -> list[Proposal]:
        """The tiles of a set to label next (app.proposals), among at most `most_layers` layers
        spread over the set (a folder's photos are classified for it, as when they are viewed)."""
        s = self.get_set(set_id)
        total = s.count()
        indices = sorted({round(i) for i in np.linspace(0, total - 1, min(total, most_layers))}) if total else []
        layers = s.layers(indices, self)
        labelled = self.store.labelled_cells(s.key)
        return propose([d for d in layers if not d.photo_changed], labelled, count)

    # review
    def false_alarm_labels(self, set_id: str, alert_layer_id: int, who: str, instead: int = POWDER) -> list[list]:
        """Label the Error tiles of a false alarm's layer with the class the reviewer says they are
        (`instead`, Powder unless told); what each tile's label was before, to undo it."""
        data = self._alert_layer(set_id, alert_layer_id)
        if data is None:
            return []
        cols, before = data.geometry.shape[1], self.store.layer_labels(data.ref.set_key, data.ref.layer)
        undo = []
        for i in np.flatnonzero(data.classes.ravel() == ERROR):
            row, col = int(i // cols), int(i % cols)
            cls, checked, *_ = before.get((row, col), (None, False))
            undo.append([row, col, cls, checked])
            self.store.set_label(data.ref, row, col, instead, True, who, why="false alarm")
        return undo

    def teach(self, set_id: str, key: str, alert, verdict: str) -> Lesson | None:
        """A reviewed alert's places as a lesson for the fine maps (teaching): its defect regions'
        boxes (else its Error tiles) on the photo as the network saw it; None when the photo is
        gone or holds another photo now."""
        data = self._alert_layer(set_id, alert.layer_id)
        if data is None or data.photo_changed or not data.ref.image:
            return None
        image = self.image(data)
        boxes = [r["box"] for r in alert.alert.regions if "box" in r]
        if not boxes:
            g = data.geometry
            rows, cols = np.nonzero(data.classes == ERROR)
            boxes = [(g.xs[c], g.ys[r], g.xs[c] + g.patch, g.ys[r] + g.patch) for r, c in zip(rows, cols, strict=True)]
        if not boxes:
            return None
        mask = box_mask(image.shape[:2], boxes)
        return Lessons(self.config.lessons_path).add(image, mask, verdict, data.ref.image, lesson_source(key, alert.id))

    def forget_lessons(self, key: str, alert_id: int) -> int:
        """Forget what a review of this alert taught (the review was undone or replaced)."""
        return len(Lessons(self.config.lessons_path).forget(source=lesson_source(key, alert_id)))

    def undo_labels(self, set_id: str, alert_layer_id: int, undo: list[list], who: str) -> int:
        """Put back the labels a review wrote, as they were before it; a tile labelled since keeps its label."""
        data = self._alert_layer(set_id, alert_layer_id)
        return self.store.restore_labels(data.ref, undo, who, wrote="false alarm") if data is not None else 0

    def _alert_layer(self, set_id: str, layer_id: int) -> LayerData | None:
        s = self.get_set(set_id)
        if not isinstance(s, BuildSet):
            raise NotFound("alerts belong to builds")
        index = next((i for i, layer in enumerate(s.stored()) if layer.id == layer_id), None)
        return None if index is None else s.layer(index)
