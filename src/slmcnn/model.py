"""The SLM-CNN network of the reference, rebuilt in PyTorch, plus a tiny variant for fast tests.

The reference (Keras) stacks five blocks Conv3x3(same) -> ReLU -> BatchNorm -> MaxPool2 with
dropout after blocks 2-5, then Flatten -> Dense 512 -> ReLU -> Dropout -> Dense 3. BatchNorm uses
Keras' defaults (epsilon 1e-3, momentum 0.99, which is 0.01 in PyTorch's convention).
"""

from dataclasses import dataclass

import torch
from torch import nn

from slmcnn.errors import ModelFileError

KERAS_BN_EPS = 1e-3
KERAS_BN_MOMENTUM = 0.01  # Keras momentum 0.99 == PyTorch momentum 0.01


@dataclass(frozen=True)
class ModelSpec:
    """Shape of one network family member: filters per block, dropout per block, dense width."""

    filters: tuple[int, ...]
    dropouts: tuple[float, ...]
    dense: int
    dense_dropout: float
    patch: int = 128
    num_classes: int = 3


MODEL_SPECS: dict[str, ModelSpec] = {
    "slmcnn": ModelSpec((32, 64, 128, 256, 256), (0.0, 0.1, 0.2, 0.3, 0.3), 512, 0.3),
    "slmcnn-tiny": ModelSpec((8, 8, 16, 16, 16), (0.0, 0.1, 0.1, 0.1, 0.1), 32, 0.1),
}


def conv_block(in_channels: int, out_channels: int, dropout: float) -> nn.Sequential:
    """Conv3x3(same) -> ReLU -> BatchNorm -> MaxPool2 (-> Dropout), the reference's order."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.BatchNorm2d(out_channels, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM),
        nn.MaxPool2d(2),
    ]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class SlmCnn(nn.Module):
    """Patch classifier: standardised 3xPxP patches in, class logits out."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        blocks, channels = [], 3
        for filters, dropout in zip(spec.filters, spec.dropouts, strict=True):
            blocks.append(conv_block(channels, filters, dropout))
            channels = filters
        self.features = nn.Sequential(*blocks)
        side = spec.patch // 2 ** len(spec.filters)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * side * side, spec.dense),
            nn.ReLU(inplace=True),
            nn.Dropout(spec.dense_dropout),
            nn.Linear(spec.dense, spec.num_classes),
        )

    def blocks(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Convolution blocks start..stop-1, so a caller can read inner feature maps in the same pass
        (the camera profile); FoldedSlmCnn offers the same two methods."""
        for block in self.features[start:stop]:
            x = block(x)
        return x

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """The dense layers on the last block's output."""
        return self.classifier(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def create_model(name: str = "slmcnn") -> SlmCnn:
    """Build a fresh network by architecture name."""
    try:
        spec = MODEL_SPECS[name]
    except KeyError:
        raise ModelFileError(f"unknown architecture {name!r}; known: {', '.join(sorted(MODEL_SPECS))}") from None
    model = SlmCnn(spec)
    model.arch = name
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable parameters, trainable + BatchNorm running statistics), as Keras' summary counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    running = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    return trainable, trainable + running
