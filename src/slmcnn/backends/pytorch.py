"""PyTorch inference, eager or compiled by TorchInductor in the process."""

import logging

import numpy as np
import torch

from slmcnn.aot import COMPILED_BATCH
from slmcnn.constants import CLASSES
from slmcnn.folding import for_evaluation
from slmcnn.preprocess import Standardised, unit_scale

log = logging.getLogger(__name__)

EAGER_BATCH = 8  # eager PyTorch measured best at 8 patches a call (2 cores; benchmarks/README.md)


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
        self.forward = Standardised(self.model)
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
            self.compiled, self.forward = False, Standardised(self.model)
            return self.forward(chunk, scale)
