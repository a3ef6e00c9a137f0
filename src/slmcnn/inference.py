"""The network behind one small interface: uint8 patches in, class probabilities out.

Backends: `torch` (channels-last, bfloat16 autocast where the CPU supports it) and `onnx`
(ONNX Runtime). Both standardise exactly as training did.
"""

from pathlib import Path

import numpy as np
import torch

from slmcnn.preprocess import prepare

DEFAULT_BATCH = 256


def bf16_supported() -> bool:
    """True when this CPU runs bfloat16 matrix kernels natively (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class TorchBackend:
    """Eager PyTorch inference; bf16 autocast when `precision='bf16'`."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, precision: str = "fp32", batch: int = DEFAULT_BATCH):
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.precision = precision
        self.batch = batch

    @torch.inference_mode()
    def probabilities(self, patches: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(patches), self.batch):
            x = prepare(patches[start : start + self.batch])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                logits = self.model(x)
            out.append(torch.softmax(logits.float(), dim=1).numpy())
        return np.concatenate(out) if out else np.zeros((0, 3), np.float32)


class OnnxBackend:
    """ONNX Runtime inference of an exported model file."""

    name = "onnx"

    def __init__(self, onnx_path: str | Path, threads: int | None = None, batch: int = DEFAULT_BATCH):
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
        return np.concatenate(out) if out else np.zeros((0, 3), np.float32)
