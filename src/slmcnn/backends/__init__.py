"""The network behind one small interface, `Backend` (base.py): uint8 patches in, class
probabilities out. One module per engine: `torch` (pytorch.py, eager), `compiled` (compiled.py, a
TorchInductor package from aot.py's cache), `onnx` (onnxrt.py, ONNX Runtime), each standardising
exactly as training did; profile.py wraps the network in the camera profile and the build memory.

`create_backend` picks an engine (`auto` decides by the CPU and the job's size) from ENGINES, a
plain dict: a new engine is one module and one entry. `create_engine` adds the camera: the one place
that turns a model, an engine name, a camera and an adaptation setting into what classifies layers,
so predict-layer, the monitor, the app and `slmcnn.predict_layers` mean the same by a camera.json.

    engine = create_engine(model, camera="camera.json")          # profile + 5-layer build memory
    outcomes = run_layers(paths, engine.backend, RunOptions(camera=engine.camera))
"""

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import torch

from slmcnn.backends.base import Backend, JudgedBackend, Network
from slmcnn.backends.onnxrt import OnnxBackend, onnx_file
from slmcnn.backends.pytorch import TorchBackend
from slmcnn.camera import Camera
from slmcnn.errors import SettingsError
from slmcnn.precision import amx_supported, bf16_supported, resolve_device, resolve_precision

__all__ = [
    "BACKENDS",
    "ENGINES",
    "Backend",
    "Engine",
    "JudgedBackend",
    "Network",
    "OnnxBackend",
    "TorchBackend",
    "auto_engine",
    "bf16_supported",
    "create_backend",
    "create_engine",
    "resolve_precision",
]
log = logging.getLogger(__name__)

PATCHES_PER_LAYER = 36
"""A 768x768 layer of 128-pixel tiles: the job size assumed when only the number of layers is known."""
EAGER_PATCHES_PER_S, COMPILED_PATCHES_PER_S = 450.0, 1800.0
"""bf16 network rates of eager and compiled PyTorch, measured on an idle 2-core machine
(benchmarks/README.md: whole 216-layer runs 21 s compiled, 29 s eager)."""
LOAD_SECONDS = 0.5
"""Loading a compiled package from the cache and its first call."""


def auto_engine(patches: int | None, is_cached: bool, compile_seconds: float) -> str:
    """What `auto` runs in bf16, whichever finishes the job first by the rates above: 'compiled' (a
    package from the cache), 'compile' (compile now, then run; cached for later jobs), 'background'
    (eager now, compiled in a child process and used once ready: jobs of unknown size, the monitor),
    'ahead' (eager now, the package compiled in a process of its own for the jobs after this one:
    a job that would run compiled if the package were there, too short to wait for it) or 'eager'."""
    if patches is None:
        return "compiled" if is_cached else "background"
    saved = patches * (1.0 / EAGER_PATCHES_PER_S - 1.0 / COMPILED_PATCHES_PER_S)
    if is_cached:
        return "compiled" if saved > LOAD_SECONDS else "eager"
    if saved > compile_seconds + LOAD_SECONDS:
        return "compile"
    return "ahead" if saved > LOAD_SECONDS else "eager"


def _torch(model: torch.nn.Module, precision: str, patches: int | None) -> Network:
    return TorchBackend(model, precision)


def _onnx(model: torch.nn.Module, precision: str, patches: int | None) -> Network:
    return OnnxBackend(onnx_file(model, int8=precision == "int8"), model)


def _compiled(model: torch.nn.Module, precision: str, patches: int | None, background: bool = False) -> Network:
    from slmcnn import aot
    from slmcnn.backends.compiled import AotBackend

    if aot.cached(model, precision) is None and shutil.which("g++") is None:
        log.warning("no C++ compiler to compile the network with; using eager PyTorch")
        return TorchBackend(model, precision)
    try:
        return AotBackend(model, precision, background=background)
    except Exception as exc:  # an Inductor limitation or a broken toolchain: eager still works
        log.warning("compiled network unavailable (%s: %s); using eager PyTorch", type(exc).__name__, exc)
        return TorchBackend(model, precision)


ENGINES: dict[str, Callable[[torch.nn.Module, str, int | None], Network]] = {
    "torch": _torch,
    "compiled": _compiled,
    "onnx": _onnx,
}
BACKENDS = ("auto", *ENGINES)


def create_backend(
    model: torch.nn.Module,
    name: str = "auto",
    precision: str = "auto",
    layers: int | None = None,
    patches: int | None = None,
    device: "str | torch.device" = "auto",
) -> Network:
    """Pick the inference engine for a network; `layers` or `patches` is the job's size, if known.

    `device`: cpu, cuda or auto (a CUDA GPU when PyTorch sees one). On a GPU the network runs in
    eager PyTorch, bf16 where the card computes it natively (`precision` auto); the compiled and
    ONNX engines are the CPU's.

    `auto`: on a CPU with AMX, PyTorch in bf16 (it agrees with fp32 on more than 99.5% of tiles of
    the synthetic test builds), eager or compiled by TorchInductor ahead of time, by `auto_engine`:
    a compiled package is cached per model, CPU and torch version (aot.py) and loads in well under
    a second, so compiling is paid once: the first job that would run faster compiled builds it (in
    a process of its own, for the jobs after it, or in the job when that pays already). Elsewhere
    the fastest of compiled bf16 and fp32 and ONNX Runtime fp32 and int8 (those of `precision`, if
    one is given), timed once per CPU, torch and model (choice.py; bf16 and int8 only where their
    tiles agree with fp32's), which compiles the packages: by the monitor or a job of unknown size
    before it starts, by a job so long that timing pays within it, and otherwise after the first
    job of about 10 layers and up, in a process of its own (that job runs eager PyTorch). With
    SLMCNN_COMPILE=0 `auto` compiles and times nothing: a package in the cache, else eager. `torch` is eager
    PyTorch in `precision`; `compiled` the cached package (compiled now if missing); `onnx` ONNX
    Runtime fp32. benchmarks/bench_predict.py and bench_whole.py measure every choice."""
    if name not in BACKENDS:
        raise SettingsError(f"`backend` must be one of {', '.join(BACKENDS)} (got {name!r})")
    device = resolve_device(device)
    if device.type != "cpu":
        if name not in ("auto", "torch"):
            raise SettingsError(
                f"`backend` {name} runs on the CPU only: with `device` {device.type} give auto or torch"
            )
        return TorchBackend(model, precision, device=device)
    requested = precision
    every_precision = precision == "auto" and name == "auto" and not amx_supported()
    precision = resolve_precision(precision)
    if patches is None and layers is not None:
        patches = layers * PATCHES_PER_LAYER
    if name != "auto":
        return ENGINES[name](model, "fp32" if name == "onnx" else precision, patches)
    from slmcnn import aot

    if not aot.compiling_allowed():
        return (
            _compiled(model, precision, patches) if aot.cached(model, precision) else _torch(model, precision, patches)
        )
    if every_precision or precision != "bf16":
        from slmcnn.backends import choice

        candidates, allowed = timed_candidates(model, requested, patches)
        if patches is not None and choice.read_record(model) is None:
            if auto_engine(patches, True, 0.0) == "eager":
                return _torch(model, precision, patches)  # no engine would pay off in so small a job: none is timed yet
            timing = choice.timing_seconds(allowed)
            if auto_engine(patches, False, timing) != "compile" and choice.spawn_timing(model, requested):
                log.info(
                    "auto: eager PyTorch %s for this job; the engines are timed once on this CPU after it, in "
                    "the background (about %.0f s), and the jobs after it run the fastest (SLMCNN_COMPILE=0: never)",
                    precision, timing,
                )  # fmt: skip
                return _torch(model, precision, patches)
        return choice.choose(model, candidates, allowed)
    is_cached = aot.cached(model, precision) is not None
    choice = auto_engine(patches, is_cached, aot.compile_seconds())
    if choice == "ahead":
        aot.spawn_compile(model, precision, detach=True)
    if choice in ("eager", "ahead"):
        return _torch(model, precision, patches)
    return _compiled(model, precision, patches, background=choice == "background")


def timed_candidates(
    model: torch.nn.Module, precision: str = "auto", patches: int | None = None
) -> tuple[dict[str, Callable[[], Network]], set[str]]:
    """The engines `auto` times on a CPU without AMX (choice.py), and those of them allowed for a
    `precision` as given (auto: every one)."""
    from slmcnn.backends.choice import precision_of

    candidates = {
        "compiled-bf16": lambda: _compiled(model, "bf16", patches),
        "compiled-fp32": lambda: _compiled(model, "fp32", patches),
        "onnx-fp32": lambda: _onnx(model, "fp32", patches),
        "onnx-int8": lambda: _onnx(model, "int8", patches),
    }
    every = precision == "auto" and not amx_supported()
    wanted = resolve_precision(precision)
    return candidates, {n for n in candidates if every or precision_of(n) == wanted}


@dataclass
class Engine:
    backend: Backend
    camera: Camera  # what the job knows of its camera, checked once (profile.open_camera)


def create_engine(
    model: torch.nn.Module,
    backend: "str | Backend" = "auto",
    precision: str = "auto",
    *,
    camera=None,
    adapt: int | None = None,
    error_threshold: float | None = None,
    layers: int | None = None,
    patches: int | None = None,
    device: "str | torch.device" = "auto",
) -> Engine:
    """The engine for a job. `camera`: a camera.Camera, or what `profile.open_camera` builds one
    from with `adapt` and `error_threshold` (a camera.json, a calibration, a profile). With a
    profile or a build memory the network runs in PyTorch (it gives the features); otherwise
    `backend` decides. `device`: where the network runs (`create_backend`)."""
    from slmcnn.profile import open_camera

    if not isinstance(backend, str) and not callable(getattr(backend, "probabilities", None)):
        raise SettingsError(f"`backend` must be an engine name or a Backend (got {type(backend).__name__})")
    camera = open_camera(camera, adapt=adapt, error_threshold=error_threshold)
    if not camera.judged:
        chosen = backend
        if isinstance(backend, str):
            chosen = create_backend(model, backend, precision, layers, patches, device)
        return Engine(chosen, camera)
    from slmcnn.backends.profile import ProfileBackend

    judged = ProfileBackend(
        camera.profile, model, adapt=camera.adapt, error_threshold=camera.error_threshold, precision=precision,
        device=device,
    )  # fmt: skip
    return Engine(judged, camera)
