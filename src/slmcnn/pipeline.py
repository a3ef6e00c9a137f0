"""The one conductor of the layer pipeline, used by `predict-layer`, the monitor and the Python API:
classify layers (predict.Predictor), score them against label masks, explain them, write their
files (outputs.RunFiles); one LayerOutcome per layer, in input order.

    outcomes = run_layers(paths, backend, RunOptions(truth=Path("masks")), files=RunFiles("out"))

`classify_patches` is its counterpart for single patches (`predict-patches`).
"""

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from slmcnn import images
from slmcnn.backends import Backend
from slmcnn.camera import Camera, CameraCalibration
from slmcnn.constants import CLASSES
from slmcnn.data import PatchTable, load_patches, load_source, load_sources, split
from slmcnn.errors import DataError, SettingsError, SlmcnnError
from slmcnn.finemaps import LEARN, FineMapper
from slmcnn.grading import Grader, GradeRules
from slmcnn.labels import NOT_A_CLASS, NOT_A_CLASS_PIXEL, LabelRule, tile_labels
from slmcnn.metrics import LayerScore, Report, compute_report, score_layer
from slmcnn.outputs import RunFiles
from slmcnn.predict import LayerFailure, LayerInput, LayerOutcome, LayerResult, Predictor
from slmcnn.teaching import Lessons, lessons_folder
from slmcnn.tiles import cut, stitch_maps
from slmcnn.validate import whole

log = logging.getLogger(__name__)
MAPS = ("fine", "tiles")


@dataclass
class RunOptions:
    """How layers are classified and what is done with each."""

    patch: int | None = None  # tile size (default: the backend's model's, else 128)
    stride: int | None = None  # tile step (default: patch); 64 = 50% overlap
    workers: int = 2  # threads decoding and tiling the next layers
    camera: Camera | CameraCalibration | str | Path | None = None  # the job's camera (read once: profile.open_camera)
    truth: Path | None = None  # folder of label masks <stem>.png: score each layer against its own
    label_rule: LabelRule = field(default_factory=LabelRule)
    explain: bool = False  # an Integrated-Gradients heat map over all tiles (needs the torch model)
    explain_steps: int = 32
    model_name: str = ""
    anomaly: Callable[[LayerResult], np.ndarray] | None = (
        None  # an extra per-tile score (a ProfileBackend gives its own)
    )
    max_megapixels: float | None = None  # sets images.LIMITS for this process: larger images are refused unread
    maps: str = "fine"  # fine: per-pixel maps (finemaps.py) from which regions and grades come; tiles: the tile grid
    photo: str = "auto"  # when layers are photographed: recoated, exposed, or auto (the camera's, else learned)
    learn: int = LEARN  # first layers of each build the fine maps learn from
    lessons: Path | None = (
        None  # reviewers' lessons the fine maps take in (default: <camera>.lessons beside camera.json)
    )

    def __post_init__(self):
        from slmcnn.profile.storage import open_camera

        self.camera = open_camera(self.camera, photo=self.photo)  # a given photo overrides the camera's
        self.photo = self.camera.photo
        self.lessons = lessons_folder(self.camera, self.lessons)
        images.set_limits(self.max_megapixels)
        whole(self.patch, "patch", 8, optional=True)
        whole(self.stride, "stride", 1, optional=True)
        whole(self.workers, "workers", 1)
        whole(self.explain_steps, "explain_steps", 2)
        if self.maps not in MAPS:
            raise SettingsError(f"`maps` must be one of {', '.join(MAPS)} (got {self.maps!r})")
        whole(self.learn, "learn", 3)
        if self.patch and self.stride and self.stride > self.patch:
            raise SettingsError(
                f"`stride` {self.stride} is larger than `patch` {self.patch}: bands would go unclassified"
            )
        if self.truth is not None and not Path(self.truth).is_dir():
            raise SettingsError(f"`truth` {self.truth}: no such folder of label masks")


def score_against_mask(result: LayerResult, mask: np.ndarray, rule: LabelRule | None = None) -> LayerScore:
    """Score a layer against its HxW label mask (0 powder, 1 object, 2 error); ignored tiles and
    pixels are left out."""
    truth = tile_labels(mask, result.grid, rule)
    predicted = result.tile_classes.ravel()
    kept, pixels = predicted != NOT_A_CLASS, result.class_map != NOT_A_CLASS_PIXEL
    return score_layer(truth[kept], predicted[kept], mask[pixels], result.class_map[pixels])


def explain_layer(model: torch.nn.Module, result: LayerResult, steps: int = 32) -> np.ndarray:
    """An (H, W) heat map of |IG attribution| for each tile's predicted class."""
    from slmcnn.explain import explain  # captum: imported only where explanations are asked for

    patches = cut(result.image, result.grid)
    explanations = explain(model, patches, result.probabilities.argmax(1), steps=steps)
    return stitch_maps(result.grid, np.stack([np.abs(e.attribution).sum(-1) for e in explanations]))


def network_patch(backend: Backend, model: torch.nn.Module | None = None) -> int | None:
    """The patch side the network takes, where the model or the backend tells it."""
    for net in (model, getattr(backend, "model", None)):
        patch = getattr(getattr(net, "spec", None), "patch", None)
        if patch:
            return patch
    session = getattr(backend, "session", None)
    side = session.get_inputs()[0].shape[-1] if session is not None else None
    return side if isinstance(side, int) else None


class LayerPipeline:
    """run_layers with its settings fixed, for callers that feed layers one at a time (the monitor)."""

    def __init__(
        self,
        backend: Backend,
        options: RunOptions | None = None,
        files: RunFiles | None = None,
        model: torch.nn.Module | None = None,
        rules: GradeRules | None = None,
    ):
        self.options = options or RunOptions()
        if self.options.explain and model is None:
            raise SlmcnnError("`explain` needs the torch model (`model`)")
        self.files, self.model = files, model
        o = self.options
        network = network_patch(backend, model)
        patch = o.patch or network or 128
        if network and patch != network:
            raise SettingsError(f"`patch` {patch} is not the model's patch size {network}; leave it out")
        if o.stride and o.stride > patch:
            raise SettingsError(f"`stride` {o.stride} is larger than `patch` {patch}: bands would go unclassified")
        self.predictor = Predictor(backend, patch, o.stride, o.workers, model_name=o.model_name, camera=o.camera)
        self.mapper = None
        if o.maps == "fine":
            net = model or getattr(backend, "model", None)
            if hasattr(net, "blocks"):
                lessons = Lessons(o.lessons) if o.lessons is not None else None
                device = getattr(backend, "device", "cpu")  # the engine's: a GPU's fine maps run there too
                mm = o.camera.mm_per_pixel
                self.mapper = FineMapper(net, o.learn, o.photo, mm_per_pixel=mm, lessons=lessons, device=device)
                self.predictor.prepare = self.mapper.see  # the next layers' texture and search while this one is mapped
            else:  # a backend of its own, without the network's layers: the tile grid is all there is
                log.warning("fine maps need the PyTorch model (`model`): the layers get tile maps")
        self.grader = Grader(rules)
        self._folder: str | None = None

    def new_build(self) -> None:
        """The next layer starts a build: the fine maps learn again, persistence starts afresh."""
        self._folder = None
        if self.mapper is not None:
            self.mapper.new_build()
        self.grader.reset()

    def _follow_build(self, path: Path) -> None:
        """Layers from another folder start another build (predict-layer over several folders)."""
        folder = str(Path(path).parent)
        if self._folder is not None and folder != self._folder:
            self.new_build()
        self._folder = folder

    def run(self, inputs: LayerInput | Iterable[LayerInput]) -> Iterator[LayerOutcome]:
        for item in self.predictor.predict(inputs):
            if isinstance(item, LayerFailure):
                yield LayerOutcome(item.path, error=item.message)
                continue
            if self.options.anomaly is not None:
                item.anomaly = np.asarray(self.options.anomaly(item), np.float32).ravel()
            self._follow_build(item.path)
            if self.mapper is not None:
                item.fine = self.mapper(item)
                item.seen = None  # 7 MB of texture a 768 px layer: not kept with a result that is
                item.class_map = item.fine.classes
                item.__dict__.pop("fractions", None)  # counted from the fine map
            item.grade = self.grader(item)
            outcome = LayerOutcome(item.path, item)
            try:
                outcome.score = self._score(item)
            except SlmcnnError as exc:
                raise type(exc)(f"{item.path}: {exc.args[0]}") from None
            if self.options.explain:
                outcome.attribution = explain_layer(self.model, item, self.options.explain_steps)
            if self.files is not None:
                outcome.files = self.files.add(outcome)
            yield outcome

    def _score(self, result: LayerResult) -> LayerScore | None:
        if self.options.truth is None:
            return None
        mask_path = Path(self.options.truth) / f"{result.path.stem}.png"
        if not mask_path.is_file():
            log.debug("%s: no mask %s, not scored", result.path, mask_path)
            return None
        return score_against_mask(result, images.read(mask_path)[..., 0], self.options.label_rule)


def job_tiles(paths: list[Path], patch: int = 128, stride: int | None = None, sample: int = 8) -> int | None:
    """About how many tiles a job has, from the headers of its first files (nothing is decoded):
    what `auto` weighs a compilation against. None when no header can be read."""
    from PIL import Image

    counts = []
    for path in paths[:sample]:
        try:
            if not Path(path).is_file():  # a FIFO would block the opening
                continue
            with images.open_image(path) as image:
                width, height = image.size
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
        counts.append(-(-max(height - patch, 0) // (stride or patch)) + 1)
        counts[-1] *= -(-max(width - patch, 0) // (stride or patch)) + 1
    return round(len(paths) * sum(counts) / len(counts)) if counts else None


def run_layers(
    inputs: LayerInput | Iterable[LayerInput],
    backend: Backend,
    options: RunOptions | None = None,
    *,
    files: RunFiles | None = None,
    model: torch.nn.Module | None = None,
) -> Iterator[LayerOutcome]:
    """Classify layers (paths, arrays or (name, array) pairs) and yield one LayerOutcome each, in
    input order: scored when `options.truth` is set, explained when `options.explain` (which needs
    `model`), written when `files` is given. An unreadable layer yields an outcome with `error`."""
    return LayerPipeline(backend, options, files, model).run(inputs)


@dataclass
class PatchOutcome:
    """Classified patches: the ones that could be read, their probabilities and what was skipped."""

    paths: list[Path]
    patches: np.ndarray  # (N, p, p, 3)
    probabilities: np.ndarray  # (N, classes)
    kept: list[int]  # index into the input list of each classified patch
    skipped: list[SlmcnnError]  # why each patch that was not classified was not

    def rows(self, truth: np.ndarray | None = None) -> list[dict]:
        """One dict per patch: image, true class (if known), predicted class, probabilities."""
        predicted = self.probabilities.argmax(1)
        return [
            {
                "image": str(path),
                "true": CLASSES[truth[j]] if truth is not None else None,
                "predicted": CLASSES[predicted[j]],
                "probabilities": {c: round(float(self.probabilities[j, n]), 5) for n, c in enumerate(CLASSES)},
            }
            for j, path in enumerate(self.paths)
        ]

    def to_text(self, truth: np.ndarray | None = None) -> str:
        """A table of the rows, and the scores when the truth is known."""
        rows = self.rows(truth)
        width = max(len(r["image"]) for r in rows)
        lines = [f"{'file':<{width}}  {'true':<7} {'predicted':<9} " + " ".join(f"{c:>7}" for c in CLASSES)]
        for r in rows:
            probabilities = " ".join(f"{r['probabilities'][c]:7.4f}" for c in CLASSES)
            lines.append(f"{r['image']:<{width}}  {r['true'] or '-':<7} {r['predicted']:<9} {probabilities}")
        if truth is not None:
            lines += ["", compute_report(truth, self.probabilities.argmax(1)).to_text()]
        return "\n".join(lines)


def load_patch_images(paths: list[Path], patch: int, resize: bool = False) -> PatchOutcome:
    """Read patch images of the model's size (scaled when `resize`); the others are skipped."""
    arrays, kept, skipped = [], [], []
    for i, path in enumerate(paths):
        try:
            image = images.read(path)
        except SlmcnnError as exc:
            skipped.append(exc)
            continue
        if image.shape[:2] != (patch, patch):
            if not resize:
                size = f"{image.shape[1]}x{image.shape[0]} is not {patch}x{patch}"
                skipped.append(DataError(f"{path}: {size} (pass `resize=True`, or predict whole layers)"))
                continue
            image = cv2.resize(image, (patch, patch), interpolation=cv2.INTER_AREA)
        arrays.append(image)
        kept.append(i)
    if not arrays:
        raise DataError("no readable patches" + (f" ({skipped[0]})" if skipped else ""))
    if len({a.dtype for a in arrays}) > 1:
        arrays = [images.to_uint8(a) for a in arrays]
    return PatchOutcome([paths[k] for k in kept], np.stack(arrays), np.zeros((0, 0)), kept, skipped)


def classify_patches(paths: list[Path], backend: Backend, patch: int = 128, resize: bool = False) -> PatchOutcome:
    """Class probabilities of patch image files; unreadable or wrongly sized ones are skipped."""
    outcome = load_patch_images(paths, patch, resize)
    outcome.probabilities = backend.probabilities(outcome.patches)
    return outcome


def patch_sources(inputs: list[str]) -> PatchTable:
    """A class-folder data set (truth known) or plain patch images (truth unknown)."""
    if len(inputs) == 1 and Path(inputs[0]).is_dir():
        try:
            return load_source(inputs[0])
        except DataError:
            pass
    paths = images.list_images(inputs)
    if not paths:
        raise DataError(f"no images found in {' '.join(map(str, inputs))}")
    return PatchTable(paths, None, [str(p) for p in paths])


def evaluate_patches(
    model: torch.nn.Module, data: list[str], part: str = "all", seed: int = 0, resize: bool = False
) -> Report:
    """The reference's scores of a model on labelled patches (or one part of their by-layer split)."""
    from slmcnn.backends import TorchBackend

    table = load_sources(data)
    if part != "all":
        table = split(table, seed=seed)[part]
    patches = load_patches(table, model.spec.patch, resize)
    return compute_report(table.labels, TorchBackend(model).probabilities(patches).argmax(1))
