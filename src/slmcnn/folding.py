"""The trained network rewritten for evaluation only: same function, less memory traffic.

In evaluation BatchNorm is a per-channel affine map a*x + b. Where every a > 0 it commutes with
max-pooling, and ReLU commutes with max-pooling, so each block Conv -> ReLU -> BN -> MaxPool equals
Conv -> MaxPool -> ReLU followed by a*x + b = a*(x + b/a). The scale a folds into the next
convolution's weights, leaving a per-channel shift by b/a before it; zero padding stays zero
padding, because a*(x + b/a) is the BatchNorm's output. Before the first dense layer both fold into
its weights and bias. The result is the original function to float rounding, with no BatchNorm and
ReLU on a quarter of the pixels; gradients through it are faster, which is what Integrated
Gradients spends its time on.
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn

from slmcnn.model import SlmCnn


def batchnorm_affine(norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) with BatchNorm in evaluation == a * x + b per channel."""
    with torch.no_grad():
        a = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        return a, norm.bias - norm.running_mean * a


class FoldedSlmCnn(nn.Module):
    """SlmCnn in evaluation with BatchNorm folded away; only for inputs of the trained patch size."""

    def __init__(self, model: SlmCnn):
        super().__init__()
        side = model.spec.patch
        weights, biases, shifts = [], [], []
        previous = None  # (a, b) of the BatchNorm before this convolution
        with torch.no_grad():
            for block in model.features:
                conv, norm = block[0], block[2]
                weight = conv.weight.detach().clone()
                if previous is not None:
                    a, b = previous
                    shifts.append((b / a).view(1, -1, 1, 1))
                    weight = weight * a.view(1, -1, 1, 1)
                weights.append(weight.contiguous(memory_format=torch.channels_last))
                biases.append(conv.bias.detach().clone())
                previous = batchnorm_affine(norm)
                side //= 2
            dense, last = model.classifier[1], model.classifier[4]
            a, b = previous
            per_position = side * side  # Flatten is channel-major: feature c*side*side + position
            self.dense = nn.Linear(dense.in_features, dense.out_features)
            self.dense.weight.copy_(dense.weight * a.repeat_interleave(per_position).view(1, -1))
            self.dense.bias.copy_(dense.bias + dense.weight @ b.repeat_interleave(per_position))
            self.last = copy.deepcopy(last)
        self.weights = nn.ParameterList(nn.Parameter(w) for w in weights)
        self.biases = nn.ParameterList(nn.Parameter(b) for b in biases)
        for i, shift in enumerate(shifts, start=1):
            self.register_buffer(f"shift{i}", shift)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def blocks(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Convolution blocks start..stop-1 (all by default) on NCHW feature maps."""
        for i in range(start, len(self.weights) if stop is None else stop):
            if i > 0:  # what is left of the previous block's BatchNorm
                x = x + getattr(self, f"shift{i}").to(x.dtype)
            x = F.relu(F.max_pool2d(F.conv2d(x, self.weights[i], self.biases[i], padding=1), 2))
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution blocks: NCHW patches in, flat features out."""
        return torch.flatten(self.blocks(x), 1)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """The dense layers: flat features in, logits out."""
        return self.last(F.relu(self.dense(features)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def maps_after(network: nn.Module, x: torch.Tensor, stops) -> list[torch.Tensor]:
    """The maps after each block in `stops` (1-based, ascending) of a network with `blocks`
    (FoldedSlmCnn or SlmCnn), each block run once: the camera profile's and the fine maps' features."""
    maps, start = [], 0
    for stop in stops:
        x = network.blocks(x, start, stop)
        maps.append(x)
        start = stop
    return maps


def foldable(model: nn.Module) -> bool:
    """True for an SlmCnn whose BatchNorm scales are all positive (the usual case after training)."""
    if not isinstance(model, SlmCnn):
        return False
    return all(bool((batchnorm_affine(block[2])[0] > 0).all()) for block in model.features)


def for_evaluation(model: nn.Module) -> nn.Module:
    """The folded network where that is exact, else the model itself in evaluation mode."""
    return FoldedSlmCnn(model) if foldable(model) else model.eval()
