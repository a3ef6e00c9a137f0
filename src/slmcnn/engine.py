"""The one place that turns a model, an engine name, a camera and an adaptation setting into what
classifies layers: a backend and the calibration that straightens the frames. `predict-layer`, the
monitor, the app and `slmcnn.predict_layers` all come here, so a camera.json means the same to each.

    engine = create_engine(model, camera="camera.json")          # profile + 5-layer build memory
    outcomes = run_layers(paths, engine.backend, RunOptions(camera=engine.calibration))
"""

from dataclasses import dataclass
from pathlib import Path

import torch

from slmcnn.adapt import ADAPT_LAYERS
from slmcnn.backends import Backend, create_backend
from slmcnn.camera import CameraCalibration
from slmcnn.errors import SettingsError
from slmcnn.profile import CameraProfile, load_camera
from slmcnn.validate import number, whole


@dataclass
class Engine:
    backend: Backend
    calibration: CameraCalibration | None  # straightens raw frames; None: the photo is the bed
    profile: CameraProfile | None
    adapt: int  # first layers of each build learned (0: off)


def create_engine(
    model: torch.nn.Module,
    backend: str | Backend = "auto",
    precision: str = "auto",
    *,
    camera: str | Path | CameraCalibration | CameraProfile | None = None,
    adapt: int | None = None,
    error_threshold: float | None = None,
    layers: int | None = None,
    patches: int | None = None,
) -> Engine:
    """The engine for a job. `camera`: a camera.json (geometry and, if it has one, the profile), a
    calibration, or a profile. `adapt`: the first layers of each build learned into a build memory
    (default: ADAPT_LAYERS with a camera profile, off without; 0 turns it off). `error_threshold`:
    the sensitivity (default: the camera's; above 1 fewer alarms and more misses). With a profile
    or adaptation the network runs in PyTorch (it gives the features); otherwise `backend` decides."""
    if not isinstance(backend, str) and not callable(getattr(backend, "probabilities", None)):
        raise SettingsError(f"`backend` must be an engine name or a Backend (got {type(backend).__name__})")
    calibration, profile = _camera(camera)
    adapt = (ADAPT_LAYERS if profile is not None else 0) if adapt is None else whole(adapt, "adapt", 0)
    number(error_threshold, "error_threshold", 0.05, 100, optional=True)
    if profile is None and not adapt:
        if error_threshold is not None:
            raise SettingsError("`error_threshold` needs a camera profile (`camera`) or `adapt`")
        chosen = backend if not isinstance(backend, str) else create_backend(model, backend, precision, layers, patches)
        return Engine(chosen, calibration, None, 0)
    from slmcnn.profile_backend import ProfileBackend

    judged = ProfileBackend(profile, model, adapt=adapt, error_threshold=error_threshold, precision=precision)
    return Engine(judged, calibration, profile, adapt)


def _camera(camera) -> tuple[CameraCalibration | None, CameraProfile | None]:
    if camera is None:
        return None, None
    if isinstance(camera, CameraProfile):
        return camera.calibration, camera
    if isinstance(camera, CameraCalibration):
        return camera, None
    if isinstance(camera, str | Path):
        return load_camera(camera)
    raise SettingsError(f"`camera` must be a camera.json, a CameraCalibration or a CameraProfile (got {camera!r:.60})")
