"""ONNX export of a model file, checked against PyTorch on the same inputs."""

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from slmcnn.errors import SettingsError
from slmcnn.inference import OnnxBackend, TorchBackend


def export_onnx(model: torch.nn.Module, path: str | Path, patch: int = 128) -> Path:
    """Write the network (standardised input -> logits) with a dynamic batch axis."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().to(memory_format=torch.contiguous_format)
    example = torch.zeros(1, 3, patch, patch)
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but needs no onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["patches"],
            output_names=["logits"],
            dynamic_axes={"patches": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return path


def max_probability_difference(model: torch.nn.Module, onnx_path: str | Path, patches: np.ndarray) -> float:
    """Largest absolute difference of class probabilities between PyTorch fp32 and ONNX Runtime."""
    torch_probs = TorchBackend(model, "fp32").probabilities(patches)
    onnx_probs = OnnxBackend(onnx_path).probabilities(patches)
    return float(np.abs(torch_probs - onnx_probs).max())


def temporary_onnx(model: torch.nn.Module, patch: int) -> Path:
    """Export to a private temporary file (for `--backend onnx` without a pre-exported file)."""
    handle, name = tempfile.mkstemp(suffix=".onnx", prefix="slmcnn-")
    os.close(handle)
    return export_onnx(model, name, patch)


COMPILE_FROM_LAYERS = 20
"""Compiling costs about 15 s once; below about this many layers eager PyTorch finishes first."""


def make_backend(name: str, model: torch.nn.Module, patch: int, precision: str = "auto", layers: int | None = None):
    """Pick the inference engine.

    `auto`: where the CPU computes bfloat16 natively (AVX-512 BF16 / AMX), PyTorch in bf16 (it
    agrees with fp32 on more than 99.5% of tiles of the synthetic test builds), compiled by
    TorchInductor when the job is long (`layers` unknown, as in monitoring, or at least
    COMPILE_FROM_LAYERS) and a C++ compiler is present; elsewhere ONNX Runtime fp32, the fastest
    fp32 engine measured here. `torch` is eager PyTorch in `precision`; `onnx` is ONNX Runtime fp32.
    benchmarks/bench_predict.py measures every choice."""
    import shutil

    from slmcnn.inference import bf16_supported

    if name not in ("auto", "torch", "onnx"):
        raise SettingsError(f"--backend must be auto, torch or onnx (got {name!r})")
    if precision == "auto":
        precision = "bf16" if bf16_supported() else "fp32"
    if name == "onnx" or (name == "auto" and precision != "bf16"):
        onnx_path = temporary_onnx(model, patch)
        backend = OnnxBackend(onnx_path)
        onnx_path.unlink()  # the session holds the graph in memory
        return backend
    long_job = layers is None or layers >= COMPILE_FROM_LAYERS
    compile_it = name == "auto" and long_job and shutil.which("g++") is not None
    return TorchBackend(model, precision, compile=compile_it)
