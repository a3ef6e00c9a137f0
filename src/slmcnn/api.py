"""The Python API, as `slmcnn` re-exports it: each function mirrors a command and loads torch and
friends only when called, so importing slmcnn stays cheap."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmcnn.constants import CLASSES

if TYPE_CHECKING:
    import numpy as np
    import torch

    from slmcnn.archive import ArchiveRun
    from slmcnn.backends import Backend
    from slmcnn.camera import Camera, CameraCalibration
    from slmcnn.explain import Explanation
    from slmcnn.metrics import Report
    from slmcnn.predict import LayerInput, LayerResult
    from slmcnn.profile import CameraProfile


def load_model(path: str | Path | None = None) -> torch.nn.Module:
    """A model file (default: the shipped model) as a network in eval mode; `model.info` holds what
    the file says about it (classes, patch size, training) and `model.source` the file."""
    from slmcnn.checkpoint import open_model

    return open_model(path)


def _model(model: torch.nn.Module | str | Path | None) -> torch.nn.Module:
    import torch

    from slmcnn.errors import SettingsError

    if model is None or isinstance(model, str | Path):
        return load_model(model)
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "spec"):
        raise SettingsError(
            f"`model` must be a model file or a network from slmcnn.load_model (got {type(model).__name__})"
        )
    return model


def create_backend(
    model: torch.nn.Module | str | Path | None = None,
    backend: str = "auto",
    precision: str = "auto",
    layers: int | None = None,
    patches: int | None = None,
    device: str = "auto",
) -> Backend:
    """The inference engine for a model: `auto` (PyTorch bf16 where the CPU has it, else ONNX
    Runtime), `torch` or `onnx`; `layers` or `patches` is the size of the job, if known; `device`
    cpu, cuda or auto (a CUDA GPU when PyTorch sees one)."""
    from slmcnn.backends import create_backend as create

    return create(_model(model), backend, precision, layers, patches, device)


def predict_layers(
    layers: LayerInput | Iterable[LayerInput],
    model: torch.nn.Module | str | Path | None = None,
    *,
    backend: str | Backend = "auto",
    stride: int | None = None,
    camera: Camera | CameraCalibration | CameraProfile | str | Path | None = None,
    adapt: int | None = None,
    error_threshold: float | None = None,
    workers: int = 2,
    stream: bool = False,
    maps: str = "fine",
    photo: str = "auto",
    learn: int = 5,
    device: str = "auto",
    lessons: str | Path | None = None,
) -> list[LayerResult] | Iterator[LayerResult]:
    """Classify layer photos: file paths, HxW(x3) arrays or (name, array) pairs (one or a list), in
    build order. `camera` is a camera.json, a Camera, a calibration or a profile, applied exactly as
    `predict-layer --camera` does: frames straightened, the profile judging each tile, and the
    first `adapt` layers of each build (default 5 with a profile) learned into a build memory that
    judges the later ones (`error_threshold`: the sensitivity). A build is one folder of files (all
    arrays are one build). With `stream`, results are yielded as each layer is done. `maps` "fine"
    (default) gives each result Powder / Object / Error per pixel (`class_map`, `fine`: signals and
    named `regions`) learned from each build's first `learn` layers, `photo` saying when the camera
    takes a layer (recoated, exposed, auto); "tiles" the 128 px tile grid. The fine maps take in the
    reviewers' `lessons` (a folder; default `<camera>.lessons` beside a camera.json, see `teach`).
    Each result carries its `grade`."""
    from slmcnn.backends import create_engine
    from slmcnn.errors import ImageReadError
    from slmcnn.pipeline import RunOptions, run_layers
    from slmcnn.predict import layer_inputs
    from slmcnn.profile import open_camera

    camera = open_camera(camera, adapt=adapt, error_threshold=error_threshold, photo=photo)
    net = _model(model)
    items = list(layer_inputs(layers))
    engine = create_engine(net, backend, camera=camera, layers=len(items), device=device)
    name = Path(getattr(net, "source", "")).name
    options = RunOptions(
        stride=stride, camera=camera, workers=workers, model_name=name, maps=maps, learn=learn, lessons=lessons
    )

    def results() -> Iterator[LayerResult]:
        for outcome in run_layers(items, engine.backend, options, model=net):
            if outcome.error is not None:
                raise ImageReadError(outcome.error)
            yield outcome.result

    return results() if stream else list(results())


def predict_archive(
    layers: str | Path | Sequence[str | Path],
    out: str | Path,
    model: str | Path | None = None,
    *,
    address: str | None = None,
    ray_workers: int | None = None,
    backend: str = "auto",
    precision: str = "auto",
    patch: int | None = None,
    stride: int | None = None,
    camera: str | Path | None = None,
    error_threshold: float | None = None,
    truth: str | Path | None = None,
    write: Sequence[str] = ("overlay", "classes", "json"),
    explain: bool = False,
    steps: int = 32,
    workers: int = 2,
    max_megapixels: float | None = None,
    force: bool = False,
    progress: Callable[[dict], None] | None = None,
) -> ArchiveRun:
    """Classify an archive of layer photos (files, folders, globs) on a Ray cluster, as
    `predict-layer --ray`: each of `ray_workers` workers (default: one per CPU of the cluster at
    `address`, or of a local one started on loopback) runs the layer pipeline of `predict_layers`
    and writes each layer's files (`write`) to `out`, a new or empty folder; summary.csv and
    layers.parquet hold one row per layer. `camera`'s profile judges each layer alone (no build
    memory). Needs the `ray` extra."""
    from slmcnn.archive import ArchiveJob, require_ray, run_archive
    from slmcnn.errors import SettingsError
    from slmcnn.files import run_folder
    from slmcnn.images import list_images

    given = [layers] if isinstance(layers, str | Path) else layers
    if not isinstance(given, Sequence) or not all(isinstance(item, str | Path) for item in given):
        raise SettingsError(f"`layers` must be a file, folder or glob, or a list of them (got {layers!r:.60})")
    require_ray()
    for name, value in (("model", model), ("camera", camera), ("truth", truth)):
        if value is not None and not isinstance(value, str | Path):
            raise SettingsError(f"`{name}` must be a path that every Ray worker can read (got {type(value).__name__})")
    paths = list_images(list(given))
    if not paths:
        raise SettingsError(f"no images found in {layers}")
    run_folder(out, force)
    optional = lambda value: None if value is None else str(value)  # noqa: E731
    job = ArchiveJob(
        str(out), len(paths), optional(model), backend, precision, patch, stride, optional(camera),
        error_threshold=error_threshold, truth=optional(truth), kinds=tuple(write), explain=explain,
        explain_steps=steps, workers=workers, max_megapixels=max_megapixels,
    )  # fmt: skip
    return run_archive(job, paths, address, ray_workers, progress)


def explain_patches(
    patches: np.ndarray | Sequence[str | Path],
    model: torch.nn.Module | str | Path | None = None,
    targets: Sequence[int] | None = None,
    **settings: Any,
) -> list[Explanation]:
    """Integrated-Gradients attributions of patches ((N, p, p, 3) uint8, or image files), for each
    patch's predicted class or `targets`; `settings` are explain.explain's (steps, baseline,
    method, precision)."""
    import numpy as np

    from slmcnn import images
    from slmcnn.errors import DataError
    from slmcnn.explain import explain

    net = _model(model)
    if isinstance(patches, str | Path):
        patches = [patches]
    if not isinstance(patches, np.ndarray):
        patches = np.stack([images.read(p) for p in patches])
    side = net.spec.patch
    if patches.ndim != 4 or patches.shape[1:] != (side, side, 3):
        raise DataError(f"`patches` must be (N, {side}, {side}, 3) images, got shape {patches.shape}")
    if targets is not None:
        targets = np.asarray(targets)
        if targets.shape != (len(patches),) or not np.isin(targets, range(len(CLASSES))).all():
            raise DataError(
                f"`targets` must be one class index 0..{len(CLASSES) - 1} per patch (got {targets.tolist()!r:.60})"
            )
    return explain(net, patches, targets, **settings)


def train(
    data: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    runs: int = 1,
    val: Sequence[str | Path] | None = None,
    test: Sequence[str | Path] | None = None,
    resize: bool = False,
    show_progress: bool = False,
    force: bool = False,
    nproc: int = 1,
    **settings: Any,
) -> list[Report]:
    """Train on labelled patches (class folders, an Image;Label CSV, synth builds) and write the run
    folder(s) to `out` (a new or empty folder; `force` writes into a used one); `settings` are
    TrainConfig's (arch, epochs, batch, lr, init, ...). With
    `init` (fine-tuning), the architecture is the init model's; a different `arch` is an error.
    `nproc` > 1 trains on that many processes (DDP: gloo on the CPU, one GPU each with NCCL),
    `batch` patches a step in all."""
    from slmcnn.checkpoint import read_info
    from slmcnn.distributed import trainer
    from slmcnn.errors import SettingsError
    from slmcnn.train import TrainConfig, run_training

    if settings.get("init"):
        info = read_info(settings["init"])
        if settings.get("arch") not in (None, info.arch):
            raise SettingsError(
                f"`arch` {settings['arch']} is not the `init` model's architecture {info.arch}; "
                "leave it out to fine-tune"
            )
        settings.update(arch=info.arch, patch=info.patch)
    elif settings.get("arch") is None:
        settings.pop("arch", None)
    if not isinstance(runs, int) or runs < 1:
        raise SettingsError(f"`runs` must be a whole number of at least 1 (got {runs!r})")
    unknown = sorted(set(settings) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise SettingsError(f"unknown setting(s) {unknown}; known: {', '.join(TrainConfig.__dataclass_fields__)}")
    sources = [data] if isinstance(data, str | Path) else list(data) if isinstance(data, list | tuple) else None
    if not sources or not all(isinstance(d, str | Path) for d in sources):
        raise SettingsError(f"`data` must be a path or a list of paths to labelled patches (got {data!r:.60})")
    config = TrainConfig(**settings)
    fit = trainer(nproc, config)
    return run_training(
        sources, out, config, runs, val, test, resize, show_progress=show_progress, force=force, trainer=fit
    )


def calibrate(
    frame: str | Path | np.ndarray | Sequence[str | Path | np.ndarray],
    corners: Sequence[Sequence[float]] | None = None,
    size: int = 768,
    bed_mm: float | Sequence[float] | None = None,
    ignore: Sequence[Sequence[Sequence[float]]] = (),
    *,
    model: torch.nn.Module | str | Path | None = None,
    full_frame: bool = False,
    error_threshold: float | None = None,
    previous: CameraCalibration | None = None,
    progress: bool = False,
    device: str = "auto",
) -> CameraCalibration | CameraProfile | None:
    """A camera for raw frames, as `slmcnn calibrate`. One frame: its calibration (the bed's corners,
    found unless given; the side of the straightened bed in pixels; polygons to ignore). Several
    frames of good layers (4 or more): a camera profile learned from them with `model` (its
    `calibration` is the first frame's; none with `full_frame`: the photos are the bed), with
    `error_threshold` as its stored sensitivity. `bed_mm`, the bed's side or (width, height) in mm,
    is kept with the calibration, or a full-frame profile, so that places are given in mm. A doubtful bed outline (`camera.bed_doubts`, against `previous` too) is logged as a
    warning; save with `slmcnn.profile.save_camera` or `CameraCalibration.save`. `device`: where the
    network reads the good frames (cpu, cuda or auto)."""
    import logging

    import numpy as np

    from slmcnn import images
    from slmcnn.camera import CameraCalibration, bed_doubts, bed_size, detect_corners, order_corners
    from slmcnn.errors import SettingsError
    from slmcnn.validate import number

    frames = list(frame) if isinstance(frame, list | tuple) else [frame]
    if not frames or not all(isinstance(f, str | Path | np.ndarray) for f in frames):
        raise SettingsError("`frame`: give a frame (a file or an image array) or a list of them")
    if corners is not None:
        try:
            corners = np.asarray(corners, np.float64).tolist()
        except (TypeError, ValueError):
            raise SettingsError(f"`corners` must be 4 (x, y) pairs of numbers (got {corners!r:.60})") from None
    number(error_threshold, "error_threshold", 0.05, 100, optional=True)
    bed_mm = list(bed_mm) if isinstance(bed_mm, list | tuple) else bed_mm
    bed_size(bed_mm)
    calibration = None
    if not full_frame:
        first = images.read(frames[0]) if isinstance(frames[0], str | Path) else images.as_rgb(frames[0], "frame")
        found = detect_corners(first) if corners is None else corners
        ordered = order_corners(found).round(2).tolist()
        calibration = CameraCalibration(ordered, size, bed_mm, [list(map(list, p)) for p in ignore])
        for doubt in bed_doubts(first.shape, ordered, previous):
            logging.getLogger("slmcnn.camera").warning("doubtful bed: %s", doubt)
    if len(frames) == 1:
        if full_frame:
            raise SettingsError("`full_frame` with one frame: a camera profile needs several good frames")
        return calibration
    from slmcnn.profile import build_profile

    profile = build_profile(
        frames, calibration, _model(model), progress=progress, error_threshold=error_threshold, device=device
    )
    if full_frame and bed_mm is not None:  # with the size of the frames the profile knows
        profile.meta["bed_mm"] = bed_mm
    return profile


def teach(
    photo: str | Path,
    verdict: str,
    boxes: Sequence[Sequence[float]] = (),
    *,
    camera: str | Path | None = None,
    lessons: str | Path | None = None,
    source: str = "cli",
):
    """Teach the fine maps a reviewer's verdict on places of a layer photo, as `slmcnn teach`, no
    retraining: `verdict` "sound" (a false alarm: its look joins what sound places look like) or
    "defect" (a confirmed defect: a look like it is Error). `boxes` (x0, y0, x1, y1 in px of the
    straightened bed, as a result's regions give them; a sound verdict without boxes covers the
    whole bed). The lesson is kept in `lessons`, default `<camera>.lessons` beside the camera.json
    (every build judged with that camera takes it in). Returns the teaching.Lesson."""
    import numpy as np

    from slmcnn import images
    from slmcnn.errors import SettingsError
    from slmcnn.profile.storage import load_calibration
    from slmcnn.teaching import Lessons, box_mask, lessons_folder

    folder = lessons_folder(camera, lessons)
    if folder is None:
        raise SettingsError("say where the lesson is kept: --lessons FOLDER, or --camera camera.json (beside it)")
    if verdict == "defect" and not boxes:
        raise SettingsError("a defect lesson needs --box X0,Y0,X1,Y1: where the defect is (px of the straightened bed)")
    calibration = load_calibration(camera) if camera is not None else None
    image = images.to_uint8(images.read(photo))
    if calibration is not None:
        image = images.to_uint8(calibration.warp(image))
    mask = box_mask(image.shape[:2], boxes) if boxes else np.ones(image.shape[:2], bool)
    return Lessons(folder).add(image, mask, verdict, str(photo), source)
