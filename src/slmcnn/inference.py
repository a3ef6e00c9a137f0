"""The network behind one small interface: uint8 patches in, class probabilities out.

Backends: `torch` (channels-last, bfloat16 autocast where the CPU supports it) and `onnx`
(ONNX Runtime). Both standardise exactly as training did.
"""

from pathlib import Path

import numpy as np
import torch

from slmcnn.folding import for_evaluation
from slmcnn.preprocess import prepare, standardise, unit_scale

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
        if compile:
            import torch._inductor.config as inductor

            inductor.freezing = True  # weights are constants at inference: lets Inductor prepack them
            self.forward = torch.compile(self.forward, dynamic=True)

    @torch.inference_mode()
    def probabilities(self, patches: np.ndarray) -> np.ndarray:
        out = []
        scale = unit_scale(patches)
        for start in range(0, len(patches), self.batch):
            chunk = torch.from_numpy(np.ascontiguousarray(patches[start : start + self.batch]))
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                out.append(self._run(chunk, scale).numpy())
        return np.concatenate(out) if out else np.zeros((0, 3), np.float32)

    def _run(self, chunk: torch.Tensor, scale: float) -> torch.Tensor:
        if not self.compiled:
            return self.forward(chunk, scale)
        try:
            return self.forward(chunk, scale)
        except Exception as exc:  # no C++ compiler, or an Inductor limitation: eager still works
            import sys

            print(f"note: torch.compile unavailable ({type(exc).__name__}); using eager PyTorch", file=sys.stderr)
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
        return np.concatenate(out) if out else np.zeros((0, 3), np.float32)
