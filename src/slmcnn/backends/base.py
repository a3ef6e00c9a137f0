"""What an engine offers, declared once, so that a new engine (another runtime, a GPU) is one module.

- `Backend`: what the Predictor classifies layers with, (N, p, p, 3) uint8/uint16 patches in,
  (N, classes) probabilities out: every engine, and the camera-profile backend that judges with one.
- `JudgedBackend`: a Backend that decides a whole layer at a time (backends/profile.py): the
  Predictor hands it each classified layer and tells it when a build starts.
- `Network`: an engine, the network on one device in one precision. It classifies its own way
  (`probabilities`: eager PyTorch, a compiled package, ONNX Runtime) and offers the network's inner
  maps, read by the camera profile (`tile_maps`, per tile) and the fine maps (`dense_maps`, over a
  whole layer). Those run the folded network (folding.py) in PyTorch on the engine's device, whatever
  classifies, so a subclass implements `probabilities` only.
"""

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from slmcnn.constants import CLASSES
from slmcnn.folding import for_evaluation, maps_after
from slmcnn.precision import autocast, resolve_device, resolve_precision
from slmcnn.preprocess import Standardised, prepare, unit_scale

STRIP_PIXELS = 256 * 768  # pixels of a layer whose maps are computed at once (Network.dense_maps)


@runtime_checkable
class Backend(Protocol):
    """Anything that maps (N, p, p, 3) uint8/uint16 patches to (N, classes) probabilities."""

    name: str

    def probabilities(self, patches: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class JudgedBackend(Backend, Protocol):
    """A Backend that decides each layer once its tiles are classified (a camera profile's)."""

    frame_shape: tuple[int, int] | None  # the frame the Predictor warms up on (None: a tile)

    def finish_layer(self, probabilities: np.ndarray, grid, name: str = "") -> tuple:
        """(decided probabilities, anomaly per tile or None, adapt.Adaptation or None) of a layer."""
        ...

    def new_build(self) -> None:
        """The next layer starts a build."""
        ...


class Network(ABC):
    """An engine: the network on `device` in `precision` ('auto' resolved for that device)."""

    name: str

    def __init__(self, model: nn.Module, precision: str = "fp32", device: "str | torch.device" = "cpu"):
        self.model = model  # as given: its spec, source and weights name the job
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        network = for_evaluation(model.eval().to(memory_format=torch.channels_last))
        if network is model and self.device.type != "cpu":  # not foldable: the caller's model stays where it is
            network = copy.deepcopy(model)
        self.network = network.to(self.device)

    @abstractmethod
    def probabilities(self, patches: np.ndarray) -> np.ndarray:
        """(N, classes) float32 class probabilities of (N, p, p, 3) uint8/uint16 patches."""

    @torch.inference_mode()
    def eager_probabilities(self, patches: np.ndarray, batch: int, forward=None) -> np.ndarray:
        """The network in eager PyTorch (or `forward`, a compiled Standardised network), `batch`
        patches a call: the eager engine's way, and the others' for inputs they cannot take."""
        forward = forward or Standardised(self.network)
        scale, out = unit_scale(patches), []
        for start in range(0, len(patches), batch):
            chunk = torch.from_numpy(np.ascontiguousarray(patches[start : start + batch])).to(self.device)
            with autocast(self.device, self.precision):
                out.append(forward(chunk, scale).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)

    @torch.inference_mode()
    def tile_maps(
        self, patches: np.ndarray, stops: Sequence[int], classify: bool = False
    ) -> tuple[list[torch.Tensor], np.ndarray | None]:
        """The float32 maps (on the device) after the blocks in `stops` (1-based, ascending) of
        patches standardised as in training, and their class probabilities when `classify`."""
        x = prepare(torch.from_numpy(np.ascontiguousarray(patches)).to(self.device))
        maps, last = self._blocks(x, stops)
        if not classify:
            return maps, None
        with autocast(self.device, self.precision):
            logits = self.network.head(torch.flatten(self.network.blocks(last, stops[-1]), 1))
        return maps, torch.softmax(logits.float(), 1).cpu().numpy()

    @torch.inference_mode()
    def dense_maps(self, image: np.ndarray, stops: Sequence[int], compiled=None) -> list[torch.Tensor]:
        """The float32 maps (on the device) after the blocks in `stops` over one whole (H, W, 3)
        float32 image, standardised by the caller (a layer is not a patch: no one mean and spread).
        `compiled`: those blocks' package (aot.load_outputs, the same stops) instead of eager PyTorch.

        Run in strips of rows with a margin that holds every output's receptive field, the margin
        cut off after: the same maps as the whole image at once (to float rounding), each block's
        activations small enough to stay in the CPU's cache (a 768 px layer's first block alone is
        37 MB): about half the CPU time on a 2-core EPYC (benchmarks/README.md)."""
        stride = 2 ** stops[-1]  # the deepest map's step in pixels: strips start on it
        margin = 2 * stride  # more than the receptive field's reach beyond a strip (stride - 1 px)
        rows = max(stride, STRIP_PIXELS // max(image.shape[1], 1) // stride * stride)
        pieces = []
        for start in range(0, image.shape[0], rows):
            top, bottom = max(start - margin, 0), min(start + rows + margin, image.shape[0])
            x = torch.from_numpy(np.ascontiguousarray(image[top:bottom], np.float32)).to(self.device)
            x = x.permute(2, 0, 1)[None].contiguous(memory_format=torch.channels_last)
            maps = compiled(x) if compiled is not None else self._blocks(x, stops)[0]
            cut = [(start - top) // 2**stop for stop in stops]
            pieces.append([m[:, :, c : c + rows // 2**stop] for m, c, stop in zip(maps, cut, stops, strict=True)])
        return [torch.cat(strips, 2) if len(strips) > 1 else strips[0] for strips in zip(*pieces, strict=True)]

    def _blocks(self, x: torch.Tensor, stops: Sequence[int]) -> tuple[list[torch.Tensor], torch.Tensor]:
        with autocast(self.device, self.precision):
            maps = maps_after(self.network, x, stops)
        return [m.float() for m in maps], maps[-1]
