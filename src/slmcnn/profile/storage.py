"""camera.json and camera.profile.safetensors beside it: the one owner of the camera file (the
geometry or full frames, the bed's size, when photos are taken, and the profile's metadata and
arrays), and `open_camera`, where a job's one `camera.Camera` is built from what the user gave.
Loading never unpickles; both are written whole or not at all; a profile names the network it
needs (checkpoint.model_hash)."""

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from slmcnn.camera import Camera, CameraCalibration
from slmcnn.constants import PHOTOS, __version__
from slmcnn.errors import ProfileError, SettingsError
from slmcnn.profile.bank import CameraProfile, update_profile

FORMAT = "slmcnn-camera-profile"
FORMAT_VERSION = 1


def update_camera(path: str | Path, frames: Sequence, model: torch.nn.Module, progress: bool = False) -> CameraProfile:
    """`calibrate --update`: add good frames to the profile in camera.json and write both files again."""
    camera = open_camera(path)
    if camera.profile is None:
        raise ProfileError(f"{path} has no camera profile to update; build one from several good frames")
    profile = update_profile(camera.profile, frames, model, progress=progress)
    save_camera(path, camera.geometry, profile, force=True, photo=camera.photo)
    return profile


def open_camera(camera=None, *, adapt: int | None = None, error_threshold: float | None = None, photo=None) -> Camera:
    """A job's one Camera from what the user gave: a camera.json, a Camera, a CameraProfile, a
    CameraCalibration or nothing, with the options that override what it holds (None, and `photo`
    "auto", keep the stored setting). Everything is checked here, once, by Camera."""
    given = {"adapt": adapt, "error_threshold": error_threshold, "photo": None if photo == "auto" else photo}
    given = {name: value for name, value in given.items() if value is not None}
    if camera is None:
        return Camera(**given)
    if isinstance(camera, Camera):
        return replace(camera, **given) if given else camera
    if isinstance(camera, CameraProfile):
        return Camera(camera.calibration, camera, **given)
    if isinstance(camera, CameraCalibration):
        return Camera(camera, **given)
    if not isinstance(camera, str | Path):
        raise SettingsError(
            f"`camera` must be a camera.json, a Camera, a CameraCalibration or a CameraProfile (got {camera!r:.60})"
        )
    path = Path(camera)
    calibration, meta, stored = _read(path)
    profile = _load_profile(path, calibration, meta) if meta is not None else None
    try:
        stored = Camera(calibration, profile, source=path, **stored)
    except SettingsError as exc:
        raise ProfileError(f"{path}: {exc.args[0]}") from None
    return replace(stored, **given) if given else stored


ARRAYS = ("mean", "scale", "memory", "memory_frame", "left_out", "thresholds")


def arrays_path(json_path: str | Path) -> Path:
    """The profile's arrays beside camera.json: the file it names, else camera.profile.safetensors."""
    path = Path(json_path)
    return _named_arrays(path) or path.with_name(path.stem + ".profile.safetensors")


def _named_arrays(path: Path) -> Path | None:
    """The arrays file that the camera.json at `path` names now, if it is one that could be read."""
    try:
        meta = json.loads(path.read_text()).get("profile") if path.is_file() else None
        return _arrays_file(path, meta) if isinstance(meta, dict) else None
    except (OSError, ValueError, AttributeError, ProfileError):
        return None


def _arrays_file(path: Path, meta: dict) -> Path:
    """The arrays file `profile.arrays` names: a plain file name beside camera.json, nothing else."""
    name = meta.get("arrays")
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ProfileError(f'{path}: its profile\'s "arrays" must be the name of a file beside it (got {name!r:.60})')
    return path.with_name(name)


def save_camera(
    path: str | Path,
    calibration: CameraCalibration | None,
    profile: CameraProfile | None,
    force: bool = False,
    photo: str = "auto",
) -> Path:
    """Write camera.json (geometry, or full frame, plus the profile's metadata, and when the camera
    takes each layer: `photo`) and, with a profile, camera.profile.safetensors beside it. An
    existing file is only replaced with `force`. Replacing a profile is one step: the new arrays
    go under another name (camera.profile.<sha256>.safetensors) and the old ones are removed once
    the new camera.json names the new ones, so a failure in between leaves the old profile whole."""
    from safetensors.numpy import save

    from slmcnn.files import write_bytes, write_text

    path = Path(path)
    for target in (path, arrays_path(path)) if profile is not None else (path,):
        if target.exists() and not force:
            raise ProfileError(f"{target} exists; pass `force` to replace it")
    if profile is not None and calibration != profile.calibration:
        raise ProfileError("the profile was built with another calibration than the one to save with it")
    if photo not in PHOTOS:
        raise ProfileError(f"`photo` must be one of {', '.join(PHOTOS)} (got {photo!r})")
    doc = calibration.to_json() if calibration else {"full_frame": True}
    doc["photo"] = photo
    current = _named_arrays(path)  # kept until the new camera.json, which names the new arrays, lands
    if profile is not None:
        tensors = {name: np.ascontiguousarray(getattr(profile, name)) for name in ARRAYS}
        data = save(tensors, metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
        digest = hashlib.sha256(data).hexdigest()
        target = path.with_name(path.stem + ".profile.safetensors")
        if current == target:
            target = path.with_name(f"{path.stem}.profile.{digest[:12]}.safetensors")
        write_bytes(target, data)  # whole or not at all, like camera.json below
        doc["profile"] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "arrays": target.name,
            "arrays_sha256": digest,
            "model": profile.model,
            "frames": profile.frames,
            "frame_shape": list(profile.frame_shape),
            "grid_shape": list(profile.grid_shape),
            "patch": profile.patch,
            **profile.meta,
        }
    write_text(path, json.dumps(doc, indent=2))
    if profile is not None:  # the arrays of the profile just replaced, and of an update that failed
        stale = re.compile(rf"{re.escape(path.stem)}\.profile\.[0-9a-f]{{12}}\.safetensors")
        for old in path.parent.iterdir():
            if old != target and (old == current or stale.fullmatch(old.name)):
                old.unlink(missing_ok=True)
    return path


def load_camera(path: str | Path) -> tuple[CameraCalibration | None, CameraProfile | None]:
    """Read camera.json: the geometry (None for full frames) and the profile, if it has one."""
    path = Path(path)
    calibration, meta, _ = _read(path)
    return calibration, (_load_profile(path, calibration, meta) if meta is not None else None)


def load_calibration(path: str | Path) -> CameraCalibration | None:
    """Only the geometry of camera.json (None for full frames): what straightens a frame."""
    return _read(Path(path))[0]


def _read(path: Path) -> tuple[CameraCalibration | None, dict | None, dict]:
    """The geometry (None for full frames), the profile's metadata and the camera's other settings
    (when photos are taken), as camera.json holds them."""
    doc = _document(path)
    meta = doc.pop("profile", None)
    settings = {"photo": doc.pop("photo", "auto")}  # checked by Camera (camera_photo alone checks it too)
    if doc.pop("full_frame", False):
        return None, meta, settings
    try:
        return CameraCalibration(**doc), meta, settings
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"{path}: not a camera calibration ({exc})") from None


def _document(path: Path) -> dict:
    """camera.json as a dict, or one clear error."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such camera file") from None
    except (OSError, ValueError) as exc:
        raise ProfileError(f"{path}: not a camera file ({exc})") from None
    if not isinstance(doc, dict):
        raise ProfileError(f"{path}: not a camera file")
    return doc


def camera_photo(path: str | Path) -> str:
    """When the camera of camera.json takes each layer (`calibrate --photo`; auto when not said)."""
    path = Path(path)
    photo = _document(path).get("photo", "auto")
    if photo not in PHOTOS:
        raise ProfileError(f"{path}: `photo` must be one of {', '.join(PHOTOS)} (got {photo!r:.40})")
    return photo


def _load_profile(path: Path, calibration: CameraCalibration | None, meta: dict) -> CameraProfile:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ProfileError(f"{path}: its profile is not an slmcnn camera profile")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ProfileError(
            f"{path}: camera profile format {meta.get('format_version')}, this slmcnn ({__version__}) reads "
            f"format {FORMAT_VERSION}; rebuild it with slmcnn calibrate"
        )
    _check_meta(path, meta)
    if calibration is not None:
        try:
            calibration.check_frame(meta["frame_shape"][1], meta["frame_shape"][0])
        except SettingsError as exc:
            raise ProfileError(f"{path}: {exc}") from None
    target = _arrays_file(path, meta)
    if not target.is_file():
        raise ProfileError(f"{path}: its profile arrays {target.name} are missing")
    if hashlib.sha256(target.read_bytes()).hexdigest() != meta.get("arrays_sha256"):
        raise ProfileError(f"{target} does not belong to {path} (changed or from another profile)")
    try:
        arrays = load_file(str(target))
        meta = dict(meta)
        fixed = {k: meta.pop(k) for k in ("model", "frame_shape", "grid_shape", "patch")}
        for k in ("format", "format_version", "arrays", "arrays_sha256", "frames"):
            meta.pop(k, None)
        profile = CameraProfile(
            calibration,
            tuple(fixed["frame_shape"]),
            tuple(fixed["grid_shape"]),
            int(fixed["patch"]),
            dict(fixed["model"]),
            *(arrays[name] for name in ARRAYS),
            meta=meta,
        )
    except (SafetensorError, OSError, KeyError, TypeError, ValueError) as exc:
        raise ProfileError(f"{path}: corrupt camera profile ({type(exc).__name__}: {exc})") from None
    if profile.thresholds.shape != (profile.positions,) or profile.memory.shape[1] != profile.mean.shape[0]:
        raise ProfileError(f"{path}: corrupt camera profile (arrays of the wrong shape)")
    for name in ARRAYS:
        if not np.isfinite(getattr(profile, name)).all():
            raise ProfileError(f'{target}: corrupt camera profile (its array "{name}" holds NaN or infinite values)')
    for name in ("scale", "thresholds"):  # divisors
        if not (getattr(profile, name) > 0).all():
            raise ProfileError(f'{target}: corrupt camera profile (its array "{name}" must be above 0 everywhere)')
    return profile


def _positive(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _bed(value) -> bool:
    sides = value if isinstance(value, list) and len(value) == 2 else [value]
    return all(_positive(side) for side in sides)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_meta(path: Path, meta: dict) -> None:
    """The profile's fields in camera.json, each checked: a bad one is one error naming it."""
    shape = lambda v: isinstance(v, list) and len(v) == 2 and all(_whole(x) for x in v)  # noqa: E731
    checks = {
        "frame_shape": (shape, "[height, width], whole numbers of pixels"),
        "grid_shape": (shape, "[rows, cols], whole numbers of tiles"),
        "patch": (_whole, "a whole number of pixels"),
        "model": (lambda v: isinstance(v, dict), "the network's name and hash"),
        "threshold": (_positive, "a number above 0"),
        "error_threshold": (_positive, "a number above 0"),
        "confirm": (lambda v: _positive(v) or v == 0, "a number of 0 or more"),
        "bed_mm": (_bed, "the bed's size in mm, one number or [width, height]"),
    }
    optional = ("threshold", "error_threshold", "confirm", "bed_mm")
    for name, (check, what) in checks.items():
        if (name in meta or name not in optional) and not check(meta.get(name)):
            raise ProfileError(f'{path}: its profile\'s "{name}" must be {what} (got {meta.get(name)!r:.60})')
