"""A compiled package from the cache (aot.py) as a backend, eager PyTorch until it is there."""

import atexit
import logging
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from slmcnn import aot
from slmcnn.aot import COMPILED_BATCH
from slmcnn.backends.base import Network
from slmcnn.backends.pytorch import EAGER_BATCH
from slmcnn.constants import CLASSES

log = logging.getLogger(__name__)


class AotBackend(Network):
    """A compiled package from the cache, on the CPU (eager PyTorch for input types without one). With
    `background=True` a missing package is compiled by a low-priority child process while eager
    PyTorch serves, and used from the first batch after it is ready (the monitor's way)."""

    name = "torch"
    compiled = True

    def __init__(self, model: torch.nn.Module, precision: str, batch: int = COMPILED_BATCH, background: bool = False):
        super().__init__(model, precision, "cpu")
        self.batch = batch
        self.runners: dict[str, Callable] = {}
        self.child: subprocess.Popen | None = None
        path = aot.cached(model, precision)
        if path is not None:
            self._load(path, np.uint8)
        elif background:
            self.child = aot.spawn_compile(model, precision)
            atexit.register(self.close)
        else:
            self._load(aot.compile_package(model, precision), np.uint8)

    def _load(self, path: Path, dtype: np.dtype) -> None:
        self.runners[np.dtype(dtype).name] = aot.load_package(path)

    @property
    def ready(self) -> bool:
        """True once a compiled package serves uint8 patches."""
        if "uint8" not in self.runners and self.child is not None and self.child.poll() is not None:
            path, self.child = aot.cached(self.model, self.precision), None
            if path is not None:
                self._load(path, np.uint8)
                log.info("now running the compiled network")
        return "uint8" in self.runners

    @torch.inference_mode()
    def probabilities(self, patches: np.ndarray) -> np.ndarray:
        runner = self.runners.get(patches.dtype.name) if self.ready else None
        if runner is None:
            return self.eager_probabilities(patches, EAGER_BATCH)
        out = [
            runner(torch.from_numpy(np.ascontiguousarray(patches[start : start + self.batch]))).numpy()
            for start in range(0, len(patches), self.batch)
        ]
        return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)

    def close(self) -> None:
        """Stop a background compilation that is still running."""
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()
            self.child.wait(timeout=10)
