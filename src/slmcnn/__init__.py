"""slmcnn: powder-bed monitoring for selective laser melting with a CNN and explanations.

    import slmcnn
    model = slmcnn.load_model()                                   # the shipped model, or a file
    for layer in slmcnn.predict_layers(["layer1.png", "layer2.png"], model):
        print(layer.path, layer.fractions)                        # LayerResult: classes, maps, fractions
    figures = slmcnn.explain_patches(patches, model)              # Integrated Gradients per patch

Importing slmcnn is cheap: the functions load torch and friends when first called.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

CLASSES: tuple[str, ...] = ("Powder", "Object", "Error")
"""Class names in label order; the index of a name is its label."""

CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "Powder": (255, 255, 255),
    "Object": (0, 0, 255),
    "Error": (255, 0, 0),
}
"""RGB overlay colours, as in the reference: white powder, blue object, red error."""

if TYPE_CHECKING:
    import numpy as np
    import torch

    from slmcnn.backends import Backend
    from slmcnn.camera import CameraCalibration
    from slmcnn.explain import Explanation
    from slmcnn.metrics import Report
    from slmcnn.predict import LayerInput, LayerResult

__all__ = [
    "CLASSES",
    "CLASS_COLOURS",
    "LayerResult",
    "calibrate",
    "create_backend",
    "explain_patches",
    "load_model",
    "predict_layers",
    "train",
]


class _Package(types.ModuleType):
    """`slmcnn.train` is the function below, also once the module slmcnn/train.py is imported
    (importing a submodule would otherwise set the package attribute of its name to the module;
    `from slmcnn.train import fit` still finds the module in sys.modules)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "train" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name == "LayerResult":
        from slmcnn.predict import LayerResult

        return LayerResult
    raise AttributeError(f"module 'slmcnn' has no attribute {name!r}")


def load_model(path: str | Path | None = None) -> torch.nn.Module:
    """A model file (default: the shipped model) as a network in eval mode; `model.info` holds what
    the file says about it (classes, patch size, training) and `model.source` the file."""
    from slmcnn import checkpoint
    from slmcnn.errors import ModelFileError

    source = checkpoint.resolve_model(path)
    if path is None and not source.is_file():
        raise ModelFileError("no shipped model in this installation; give a model file or train one")
    model, info = checkpoint.load_model(source)
    model.info, model.source = info, source
    return model


def _model(model: torch.nn.Module | str | Path | None) -> torch.nn.Module:
    return model if model is not None and not isinstance(model, str | Path) else load_model(model)


def create_backend(
    model: torch.nn.Module | str | Path | None = None,
    backend: str = "auto",
    precision: str = "auto",
    layers: int | None = None,
    patches: int | None = None,
) -> Backend:
    """The inference engine for a model: `auto` (PyTorch bf16 where the CPU has it, else ONNX
    Runtime), `torch` or `onnx`; `layers` or `patches` is the size of the job, if known."""
    from slmcnn.backends import create_backend as create

    return create(_model(model), backend, precision, layers, patches)


def predict_layers(
    layers: LayerInput | Iterable[LayerInput],
    model: torch.nn.Module | str | Path | None = None,
    *,
    backend: str | Backend = "auto",
    stride: int | None = None,
    camera: CameraCalibration | str | Path | None = None,
    workers: int = 2,
) -> list[LayerResult]:
    """Classify layer photos: file paths, HxW(x3) arrays or (name, array) pairs (one or a list).
    `camera` is a calibration (or its file) that straightens raw frames first."""
    from slmcnn.errors import ImageReadError
    from slmcnn.pipeline import RunOptions, run_layers
    from slmcnn.predict import layer_inputs

    net = _model(model)
    items = list(layer_inputs(layers))
    engine = create_backend(net, backend, layers=len(items)) if isinstance(backend, str) else backend
    name = Path(getattr(net, "source", "")).name
    options = RunOptions(stride=stride, camera=camera, workers=workers, model_name=name)
    results = []
    for outcome in run_layers(items, engine, options, model=net):
        if outcome.error is not None:
            raise ImageReadError(outcome.error)
        results.append(outcome.result)
    return results


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
    from slmcnn.explain import explain

    if not isinstance(patches, np.ndarray):
        patches = np.stack([images.read(p) for p in patches])
    return explain(_model(model), patches, None if targets is None else np.asarray(targets), **settings)


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
    **settings: Any,
) -> list[Report]:
    """Train on labelled patches (class folders, an Image;Label CSV, synth builds) and write the run
    folder(s) to `out` (a new or empty folder; `force` writes into a used one); `settings` are
    TrainConfig's (arch, epochs, batch, lr, init, ...). With
    `init` (fine-tuning), the architecture is the init model's; a different `arch` is an error."""
    from slmcnn.checkpoint import read_info
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
    sources = [data] if isinstance(data, str | Path) else list(data)
    config = TrainConfig(**settings)
    return run_training(sources, out, config, runs, val, test, resize, show_progress=show_progress, force=force)


def calibrate(
    frame: str | Path | np.ndarray,
    corners: Sequence[Sequence[float]] | None = None,
    size: int = 768,
    bed_mm: float | None = None,
    ignore: Sequence[Sequence[Sequence[float]]] = (),
) -> CameraCalibration:
    """A camera calibration for raw frames: the bed's corners (found in `frame` unless given),
    the side of the straightened bed in pixels (and mm), and polygons to ignore."""
    from slmcnn import images
    from slmcnn.camera import CameraCalibration, detect_corners, order_corners

    if corners is None:
        corners = detect_corners(images.read(frame) if isinstance(frame, str | Path) else frame)
    ordered = order_corners(corners).round(2).tolist()
    return CameraCalibration(ordered, size, bed_mm, [list(map(list, p)) for p in ignore])
