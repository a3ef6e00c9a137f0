"""PyTorch inference, eager or compiled by TorchInductor in the process, on the CPU or a CUDA GPU."""

import logging

import numpy as np
import torch

from slmcnn.aot import COMPILED_BATCH
from slmcnn.backends.base import Network
from slmcnn.preprocess import Standardised

log = logging.getLogger(__name__)

EAGER_BATCH = 8  # eager PyTorch measured best at 8 patches a call (2 cores; benchmarks/README.md)
GPU_BATCH = 256  # a GPU is kept busy by large batches (benchmarks/bench_gpu.py)


class TorchBackend(Network):
    """PyTorch inference on a snapshot of the model with BatchNorm folded away (folding.py): eager,
    or compiled by TorchInductor (`compile=True`) with frozen weights, which is 2-3x faster on CPU
    after a one-off compilation of about 15 s; bf16 autocast when `precision='bf16'`; `device`
    cpu, cuda or auto (precision.resolve_device)."""

    name = "torch"

    def __init__(
        self,
        model: torch.nn.Module,
        precision: str = "fp32",
        batch: int | None = None,
        compile: bool = False,
        device: "str | torch.device" = "cpu",
    ):
        super().__init__(model, precision, device)
        on_gpu = self.device.type == "cuda"
        self.batch = batch or (GPU_BATCH if on_gpu else COMPILED_BATCH if compile else EAGER_BATCH)
        self.compiled = compile
        self.forward = Standardised(self.network)
        if compile:  # frozen weights are constants at inference: Inductor prepacks them (this call only)
            self.forward = torch.compile(self.forward, dynamic=True, options={"freezing": True})

    def probabilities(self, patches: np.ndarray) -> np.ndarray:
        if not self.compiled:
            return self.eager_probabilities(patches, self.batch)
        try:
            return self.eager_probabilities(patches, self.batch, self.forward)
        except Exception as exc:  # no C++ compiler, or an Inductor limitation: eager still works
            log.warning("torch.compile unavailable (%s); using eager PyTorch", type(exc).__name__)
            self.compiled, self.forward = False, Standardised(self.network)
            return self.eager_probabilities(patches, self.batch)
