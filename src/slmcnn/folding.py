"""The trained network rewritten for evaluation only: same function, less memory traffic.

In evaluation BatchNorm is a per-channel affine map a*x + b. Where every a > 0 it commutes with
max-pooling, and ReLU commutes with max-pooling, so each block Conv -> ReLU -> BN -> MaxPool equals
Conv -> MaxPool -> ReLU followed by a*x + b, and that affine map folds into the next convolution's
weights (or the first dense layer). The next convolution's zero padding becomes padding with -b/a,
the value that the unfolded BatchNorm maps to 0. The result is the original function to float
rounding, with no BatchNorm and ReLU on a quarter of the pixels; gradients through it are faster,
which is what Integrated Gradients spends its time on.
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
        weights, biases, frames = [], [], []
        previous = None  # (a, b) of the BatchNorm before this convolution
        with torch.no_grad():
            for block in model.features:
                conv, norm = block[0], block[2]
                weight, bias = conv.weight.detach().clone(), conv.bias.detach().clone()
                frame = torch.zeros(1, conv.in_channels, side + 2, side + 2)
                if previous is not None:
                    a, b = previous
                    bias = bias + weight.sum((2, 3)) @ b
                    frame[:] = (-b / a).view(1, -1, 1, 1)
                    frame[:, :, 1:-1, 1:-1] = 0
                    weight = weight * a.view(1, -1, 1, 1)
                weights.append(weight.contiguous(memory_format=torch.channels_last))
                biases.append(bias)
                frames.append(frame.contiguous(memory_format=torch.channels_last))
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
        for i, frame in enumerate(frames):
            self.register_buffer(f"frame{i}", frame)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def blocks(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Convolution blocks start..stop-1 (all by default) on NCHW feature maps."""
        for i in range(start, len(self.weights) if stop is None else stop):
            weight, bias = self.weights[i], self.biases[i]
            if i == 0:  # the image itself is zero padded
                x = F.conv2d(x, weight, bias, padding=1)
            else:  # pad with the value the unfolded BatchNorm maps to 0
                x = F.conv2d(F.pad(x, (1, 1, 1, 1)) + getattr(self, f"frame{i}").to(x.dtype), weight, bias)
            x = F.relu(F.max_pool2d(x, 2))
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution blocks: NCHW patches in, flat features out."""
        return torch.flatten(self.blocks(x), 1)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """The dense layers: flat features in, logits out."""
        return self.last(F.relu(self.dense(features)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def foldable(model: nn.Module) -> bool:
    """True for an SlmCnn whose BatchNorm scales are all positive (the usual case after training)
    and whose feature maps stay at least 3 pixels wide."""
    if not isinstance(model, SlmCnn) or model.spec.patch // 2 ** (len(model.spec.filters) - 1) < 3:
        return False
    return all(bool((batchnorm_affine(block[2])[0] > 0).all()) for block in model.features)


def for_evaluation(model: nn.Module) -> nn.Module:
    """The folded network where that is exact, else the model itself in evaluation mode."""
    return FoldedSlmCnn(model) if foldable(model) else model.eval()
