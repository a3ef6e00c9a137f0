"""The network behind one small interface, `Backend`: uint8 patches in, class probabilities out.

Backends: `torch` (channels-last, bfloat16 autocast where the CPU supports it, optionally compiled)
and `onnx` (ONNX Runtime). Both standardise exactly as training did. `create_backend` picks one.
"""

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from slmcnn.constants import CLASSES
from slmcnn.errors import SettingsError
from slmcnn.folding import for_evaluation
from slmcnn.preprocess import prepare, standardise, unit_scale

log = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "compiled", "onnx")
PRECISIONS = ("auto", "fp32", "bf16")


@runtime_checkable
class Backend(Protocol):
    """Anything that maps (N, p, p, 3) uint8/uint16 patches to (N, classes) probabilities."""

    name: str

    def probabilities(self, patches: np.ndarray) -> np.ndarray: ...


# Small batches keep the activations in the CPU's cache: compiled bf16 ran 2.7x the patches/s of
# batch 256 at 16 patches, eager PyTorch best at 8 (2 cores; benchmarks/README.md).
COMPILED_BATCH = 16
EAGER_BATCH = 8


def bf16_supported() -> bool:
    """True when this CPU runs bfloat16 matrix kernels natively (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str) -> str:
    """`auto` -> bf16 where the CPU computes it natively, else fp32."""
    if precision not in PRECISIONS:
        raise SettingsError(f"`precision` must be one of {', '.join(PRECISIONS)} (got {precision!r})")
    if precision == "auto":
        return "bf16" if bf16_supported() else "fp32"
    return precision


class _Standardised(torch.nn.Module):
    """Network with the reference's standardisation in front, so a compiler can fuse both."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, patches: torch.Tensor, scale: float) -> torch.Tensor:
        # standardised in NxPxPx3 order, where the reductions run over contiguous memory (this was a
        # quarter of the compiled network's time when done after the permute); the permuted view is
        # channels-last already
        x = standardise(patches.float() / scale).permute(0, 3, 1, 2)
        return torch.softmax(self.model(x).float(), dim=1)


class TorchBackend:
    """PyTorch inference on a snapshot of the model with BatchNorm folded away (folding.py): eager,
    or compiled by TorchInductor (`compile=True`) with frozen weights, which is 2-3x faster on CPU
    after a one-off compilation of about 15 s; bf16 autocast when `precision='bf16'`."""

    name = "torch"

    def __init__(
        self, model: torch.nn.Module, precision: str = "fp32", batch: int | None = None, compile: bool = False
    ):
        self.model = for_evaluation(model.eval().to(memory_format=torch.channels_last))
        self.precision = precision
        self.batch = batch or (COMPILED_BATCH if compile else EAGER_BATCH)
        self.compiled = compile
        self.forward = _Standardised(self.model)
        if compile:  # frozen weights are constants at inference: Inductor prepacks them (this call only)
            self.forward = torch.compile(self.forward, dynamic=True, options={"freezing": True})

    @torch.inference_mode()
    def probabilities(self, patches: np.ndarray) -> np.ndarray:
        out = []
        scale = unit_scale(patches)
        for start in range(0, len(patches), self.batch):
            chunk = torch.from_numpy(np.ascontiguousarray(patches[start : start + self.batch]))
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                out.append(self._run(chunk, scale).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)

    def _run(self, chunk: torch.Tensor, scale: float) -> torch.Tensor:
        if not self.compiled:
            return self.forward(chunk, scale)
        try:
            return self.forward(chunk, scale)
        except Exception as exc:  # no C++ compiler, or an Inductor limitation: eager still works
            log.warning("torch.compile unavailable (%s); using eager PyTorch", type(exc).__name__)
            self.compiled, self.forward = False, _Standardised(self.model)
            return self.forward(chunk, scale)


class OnnxBackend:
    """ONNX Runtime inference of an exported model file."""

    name = "onnx"

    def __init__(self, onnx_path: str | Path, threads: int | None = None, batch: int = 64):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.batch = batch

    def probabilities(self, patches: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(patches), self.batch):
            x = prepare(patches[start : start + self.batch]).contiguous().numpy()
            logits = self.session.run(None, {self.input_name: x})[0]
            out.append(torch.softmax(torch.from_numpy(logits), dim=1).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)


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
    (eager now, compiled in a child process and used once ready: jobs of unknown size, the monitor)
    or 'eager'."""
    if patches is None:
        return "compiled" if is_cached else "background"
    saved = patches * (1.0 / EAGER_PATCHES_PER_S - 1.0 / COMPILED_PATCHES_PER_S)
    if is_cached:
        return "compiled" if saved > LOAD_SECONDS else "eager"
    return "compile" if saved > compile_seconds + LOAD_SECONDS else "eager"


def create_backend(
    model: torch.nn.Module,
    name: str = "auto",
    precision: str = "auto",
    layers: int | None = None,
    patches: int | None = None,
) -> Backend:
    """Pick the inference engine for a network; `layers` or `patches` is the job's size, if known.

    `auto`: where the CPU computes bfloat16 natively (AVX-512 BF16 / AMX), PyTorch in bf16 (it
    agrees with fp32 on more than 99.5% of tiles of the synthetic test builds), eager or compiled by
    TorchInductor ahead of time, by `auto_engine`: a compiled package is cached per model, CPU and
    torch version (aot.py) and loads in well under a second, so compiling is paid once; elsewhere
    ONNX Runtime fp32, the fastest fp32 engine measured here. `torch` is eager PyTorch in
    `precision`; `compiled` the cached package (compiled now if missing); `onnx` ONNX Runtime fp32.
    benchmarks/bench_predict.py and bench_whole.py measure every choice."""
    if name not in BACKENDS:
        raise SettingsError(f"`backend` must be one of {', '.join(BACKENDS)} (got {name!r})")
    precision = resolve_precision(precision)
    if name == "onnx" or (name == "auto" and precision != "bf16"):
        from slmcnn.export import export_onnx

        handle, onnx_path = tempfile.mkstemp(suffix=".onnx", prefix="slmcnn-")
        os.close(handle)
        try:
            export_onnx(model, onnx_path, model.spec.patch)
            return OnnxBackend(onnx_path)  # the session holds the graph in memory
        finally:
            Path(onnx_path).unlink()
    if name == "torch":
        return TorchBackend(model, precision)
    from slmcnn import aot

    if patches is None and layers is not None:
        patches = layers * PATCHES_PER_LAYER
    is_cached = aot.cached(model, precision) is not None
    engine = "compile" if name == "compiled" else auto_engine(patches, is_cached, aot.compile_seconds())
    if engine == "eager" or (not is_cached and shutil.which("g++") is None):
        return TorchBackend(model, precision)
    try:
        return aot.AotBackend(model, precision, background=engine == "background")
    except Exception as exc:  # an Inductor limitation or a broken toolchain: eager still works
        log.warning("compiled network unavailable (%s: %s); using eager PyTorch", type(exc).__name__, exc)
        return TorchBackend(model, precision)
