"""The reference's per-patch standardisation, shared by training, prediction and explanation."""

import numpy as np
import torch


def unit_scale(patches: np.ndarray | torch.Tensor) -> float:
    """The value of full white: 65535 for 16-bit images, 255 for 8-bit."""
    return 65535.0 if patches.dtype in (np.uint16, torch.uint16) else 255.0


def _unit_nhwc(patches: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Training batches come as tensors already, on the training device; arrays are wrapped."""
    x = patches if isinstance(patches, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(patches))
    return x.float().div_(unit_scale(patches))


def to_unit_tensor(patches: np.ndarray) -> torch.Tensor:
    """NxPxPx3 uint8/uint16 -> Nx3xPxP float32 in [0, 1] (16-bit scaled by 65535, 8-bit by 255)."""
    return _unit_nhwc(patches).permute(0, 3, 1, 2)


def standardise(x: torch.Tensor) -> torch.Tensor:
    """(x - mean) / max(std, 1/sqrt(N)) per image over all pixels and channels (tf.image's rule)."""
    flat = x.reshape(x.shape[0], -1)
    n = flat.shape[1]
    mean = flat.mean(dim=1)
    std = flat.std(dim=1, unbiased=False).clamp_min(1.0 / n**0.5)
    shape = (-1,) + (1,) * (x.dim() - 1)
    return (x - mean.view(shape)) / std.view(shape)


def prepare(patches: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Image patches straight to network input in channels-last memory (faster on CPU): standardised
    while still NxPxPx3, where each patch is one contiguous run, then only re-labelled as NCHW."""
    return standardise(_unit_nhwc(patches)).permute(0, 3, 1, 2)


class Standardised(torch.nn.Module):
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
