"""Setting a camera up in the app: the four bed corners clicked on a raw frame of a folder, good
layers picked from it, and camera.json (with the profile, from 4 or more good layers) written to the
app's work folder, as `slmcnn calibrate` would write it; the app then uses it."""

import io
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from slmcnn import images
from slmcnn.app.sources import FolderSet, NotFound
from slmcnn.camera import CameraCalibration, bed_doubts, detect_corners, order_corners
from slmcnn.errors import SettingsError, SlmcnnError

log = logging.getLogger(__name__)
SHOWN = 1200  # longest side of the frame shown to click on


def raw_frame(folder: FolderSet, index: int) -> tuple[Path, np.ndarray]:
    files = folder.files()
    if not 0 <= index < len(files):
        raise NotFound(f"{folder.name} has no layer {index}")
    return files[index], images.to_uint8(images.read(files[index]))


def frame_jpeg(folder: FolderSet, index: int, side: int = SHOWN) -> tuple[bytes, float]:
    """The raw frame as a JPEG of at most `side` px a side (a thumbnail when small), and its scale
    (shown px per frame px)."""
    _, frame = raw_frame(folder, index)
    scale = min(1.0, side / max(frame.shape[:2]))
    shown = Image.fromarray(frame)
    if scale < 1:
        shown = shown.resize((round(frame.shape[1] * scale), round(frame.shape[0] * scale)), Image.LANCZOS)
    buffer = io.BytesIO()
    shown.convert("RGB").save(buffer, format="JPEG", quality=88)
    return buffer.getvalue(), scale


def propose(folder: FolderSet, index: int, previous: CameraCalibration | None) -> dict:
    """The corners detected on a frame (clockwise from top-left, frame pixels) and the doubts about them."""
    _, frame = raw_frame(folder, index)
    try:
        corners = order_corners(detect_corners(frame)).round(1).tolist()
    except SlmcnnError as exc:
        return {"corners": None, "doubts": [str(exc)], "width": frame.shape[1], "height": frame.shape[0]}
    doubts = bed_doubts(frame.shape, corners, previous)
    return {"corners": corners, "doubts": doubts, "width": frame.shape[1], "height": frame.shape[0]}


def corner_list(value) -> list[list[float]]:
    """Four [x, y] pairs of finite numbers, as the page sends them."""
    ok = isinstance(value, list) and len(value) == 4
    ok = ok and all(isinstance(p, list) and len(p) == 2 and all(_finite(v) for v in p) for p in value)
    if not ok:
        raise SettingsError("corners must be four [x, y] pairs of numbers, clockwise from top-left")
    return [[float(v) for v in p] for p in value]


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def write_camera(
    workspace,
    folder: FolderSet,
    corners: list[list[float]],
    index: int,
    good: list[int],
    size: int = 768,
    error_threshold: float | None = None,
    replace: bool = False,
) -> dict:
    """camera.json in the work folder from clicked corners on frame `index` and the `good` layers
    (none, or 4 or more: a profile), used by the app from now on. An existing camera.json is only
    replaced with `replace`."""
    from slmcnn.profile import arrays_path, build_profile, save_camera

    target = workspace.work / "camera.json"
    if target.exists() and not replace:
        raise SettingsError(f"{target} exists; tick 'replace' to write over it")
    files = folder.files()
    if any(not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(files) for i in good):
        raise SettingsError(f"good layers must be indices 0..{len(files) - 1} of {folder.name}")
    if 0 < len(good) < 4:
        raise SettingsError(
            f"a camera profile needs at least 4 good layers (got {len(good)}); pick none for the geometry alone"
        )
    path, frame = raw_frame(folder, index)
    previous = workspace.camera
    calibration = CameraCalibration(order_corners(corners).round(2).tolist(), size)
    doubts = bed_doubts(frame.shape, calibration.corners, previous)
    target.parent.mkdir(parents=True, exist_ok=True)
    profile = None
    if good:
        frames = [files[i] for i in sorted(set(good))]
        profile = build_profile(frames, calibration, workspace.model, error_threshold=error_threshold)
        save_camera(target, profile.calibration, profile, force=True)
    else:
        save_camera(target, calibration, None, force=True)
    workspace.use_camera(target)
    written = [str(target)] + ([str(arrays_path(target))] if profile is not None else [])
    log.info("camera set up in the app: %s", ", ".join(written))
    return {
        "written": written,
        "corners": calibration.corners,
        "doubts": doubts,
        "profile": profile.summary() if profile is not None else None,
        "monitor": f"slmcnn monitor ... --camera {target}",
    }
