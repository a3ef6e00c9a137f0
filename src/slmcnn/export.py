"""The `export` command's check: an ONNX export (backends.onnxrt.export_onnx) against PyTorch on the same inputs."""

from pathlib import Path

import numpy as np
import torch

from slmcnn.backends import OnnxBackend, TorchBackend


def max_probability_difference(model: torch.nn.Module, onnx_path: str | Path, patches: np.ndarray) -> float:
    """Largest absolute difference of class probabilities between PyTorch fp32 and ONNX Runtime."""
    torch_probs = TorchBackend(model, "fp32").probabilities(patches)
    onnx_probs = OnnxBackend(onnx_path, model).probabilities(patches)
    return float(np.abs(torch_probs - onnx_probs).max())


def compare(model: torch.nn.Module, onnx_path: str | Path, check: list[str | Path], patch: int = 128):
    """(what, patches, max probability difference) of PyTorch vs the ONNX file: on 32 random
    patches, then on each image of `check` (a patch, or a layer cut into tiles)."""
    from slmcnn import images
    from slmcnn.tiles import tile

    random = np.random.default_rng(0).integers(0, 256, (32, patch, patch, 3), dtype=np.uint8)
    yield "32 random patches", 32, max_probability_difference(model, onnx_path, random)
    for path in check:
        image = images.to_uint8(images.read(path))
        patches = image[None] if image.shape[:2] == (patch, patch) else tile(image, patch).patches
        yield str(path), len(patches), max_probability_difference(model, onnx_path, patches)
