"""The one small interface every engine has: uint8/uint16 patches in, class probabilities out."""

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Backend(Protocol):
    """Anything that maps (N, p, p, 3) uint8/uint16 patches to (N, classes) probabilities."""

    name: str

    def probabilities(self, patches: np.ndarray) -> np.ndarray: ...
