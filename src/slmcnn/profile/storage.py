"""camera.json and camera.profile.safetensors beside it: the one owner of the camera file (the
geometry, and the profile's metadata and arrays). Loading never unpickles; both are written whole
or not at all; a profile names the network it needs (checkpoint.model_hash)."""

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from slmcnn.camera import CameraCalibration
from slmcnn.constants import PHOTOS, __version__
from slmcnn.errors import ProfileError
from slmcnn.profile.bank import CameraProfile, update_profile

FORMAT = "slmcnn-camera-profile"
FORMAT_VERSION = 1


def update_camera(path: str | Path, frames: Sequence, model: torch.nn.Module, progress: bool = False) -> CameraProfile:
    """`calibrate --update`: add good frames to the profile in camera.json and write both files again."""
    calibration, profile = load_camera(path)
    if profile is None:
        raise ProfileError(f"{path} has no camera profile to update; build one from several good frames")
    profile = update_profile(profile, frames, model, progress=progress)
    save_camera(path, calibration, profile, force=True, photo=camera_photo(path))
    return profile


ARRAYS = ("mean", "scale", "memory", "memory_frame", "left_out", "thresholds")


def arrays_path(json_path: str | Path) -> Path:
    path = Path(json_path)
    return path.with_name(path.stem + ".profile.safetensors")


def save_camera(
    path: str | Path,
    calibration: CameraCalibration | None,
    profile: CameraProfile | None,
    force: bool = False,
    photo: str = "auto",
) -> Path:
    """Write camera.json (geometry, or full frame, plus the profile's metadata, and when the camera
    takes each layer: `photo`) and, with a profile, camera.profile.safetensors beside it. An
    existing file is only replaced with `force`."""
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
    if profile is not None:
        tensors = {name: np.ascontiguousarray(getattr(profile, name)) for name in ARRAYS}
        target = arrays_path(path)
        data = save(tensors, metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
        write_bytes(target, data)  # whole or not at all, like camera.json below
        doc["profile"] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "arrays": target.name,
            "arrays_sha256": hashlib.sha256(data).hexdigest(),
            "model": profile.model,
            "frames": profile.frames,
            "frame_shape": list(profile.frame_shape),
            "grid_shape": list(profile.grid_shape),
            "patch": profile.patch,
            **profile.meta,
        }
    write_text(path, json.dumps(doc, indent=2))
    return path


def load_camera(path: str | Path) -> tuple[CameraCalibration | None, CameraProfile | None]:
    """Read camera.json: the geometry (None for full frames) and the profile, if it has one."""
    path = Path(path)
    calibration, meta = _read(path)
    return calibration, (_load_profile(path, calibration, meta) if meta is not None else None)


def load_calibration(path: str | Path) -> CameraCalibration | None:
    """Only the geometry of camera.json (None for full frames): what straightens a frame."""
    return _read(Path(path))[0]


def _read(path: Path) -> tuple[CameraCalibration | None, dict | None]:
    doc = _document(path)
    meta = doc.pop("profile", None)
    doc.pop("photo", None)  # camera_photo reads it
    if doc.pop("full_frame", False):
        return None, meta
    try:
        return CameraCalibration(**doc), meta
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
    target = path.with_name(str(meta.get("arrays", "")))
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
    return profile
