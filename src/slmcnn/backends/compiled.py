"""A compiled package from the cache (aot.py) as a backend, eager PyTorch until it is there."""

import atexit
import logging
import subprocess
import time
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
LOOK_EVERY = 5.0  # seconds between looks into the cache while another process compiles the package


class AotBackend(Network):
    """A compiled package from the cache, on the CPU (eager PyTorch for input types without one).
    A missing package is compiled now, or with `background=True` by a low-priority child process
    while eager PyTorch serves, and used from the first batch after it is ready (the monitor's way);
    while another process compiles it, eager PyTorch serves until it is in the cache. A package
    that does not load is removed and compiled again."""

    name = "torch"
    compiled = True

    def __init__(self, model: torch.nn.Module, precision: str, batch: int = COMPILED_BATCH, background: bool = False):
        super().__init__(model, precision, "cpu")
        self.batch = batch
        self.runners: dict[str, Callable] = {}
        self.child: subprocess.Popen | None = None
        self._looked = 0.0
        path = aot.cached(model, self.precision)
        if path is not None and self._load(path):
            return
        if background:
            self.child = aot.spawn_compile(model, self.precision)
            atexit.register(self.close)
            return
        built = aot.compile_package(model, self.precision)
        if built is None:
            log.info("another process is compiling the network; eager PyTorch until it is done")
        elif not self._load(built):
            raise RuntimeError(f"the package just compiled ({built}) does not load")

    def _load(self, path: Path) -> bool:
        """Serve uint8 patches from the package; False (and the package removed) when it does not load."""
        try:
            self.runners["uint8"] = aot.load_package(path)
        except Exception as exc:  # another torch build's, or damaged: never tried again
            log.warning(
                "the cached compiled network does not load (%s: %s); it will be compiled again", type(exc).__name__, exc
            )
            aot.forget(path)
            return False
        return True

    @property
    def ready(self) -> bool:
        """True once a compiled package serves uint8 patches (looked for while none is running)."""
        if "uint8" in self.runners:
            return True
        if self.child is not None and self.child.poll() is None:
            return False
        if time.monotonic() - self._looked < LOOK_EVERY:
            return False
        self._looked, self.child = time.monotonic(), None
        path = aot.cached(self.model, self.precision)
        if path is not None and self._load(path):
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
